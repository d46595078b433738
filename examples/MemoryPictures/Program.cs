// docs/physical-memory.md's program: a picture of physical memory as a PNG and as text, and the
// state of one frame. The PNG goes to memory.png in the current directory.
using Kmem;

using var m = Machine.Boot(new MachineOptions { Memory = "1G", Cpus = 2 });
nint p = m.Kmalloc(64 << 10, Gfp.Kernel);                             // 16 frames of large kmalloc
MemoryMap.Render(m, "memory.png", new MemoryMapOptions { Caption = "after kmalloc" });
FrameState s = MemoryMap.Classify(m, m.VirtToPage(p).Pfn);              // FrameState.LargeKmalloc
Console.Write(MemoryMap.RenderText(m, 80));                             // the same map as characters
Console.WriteLine($"frame {m.VirtToPage(p).Pfn}: {s}; picture: {Path.GetFullPath("memory.png")} ({new FileInfo("memory.png").Length} bytes)");
m.Kfree(p);
