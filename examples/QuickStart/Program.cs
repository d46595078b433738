// The README's program: boot a machine, take four contiguous frames from the buddy allocator,
// write through the direct map, read /proc/buddyinfo, then the slab and vmalloc layers in a few
// lines. Its statements are the README's, line for line (ExampleTests checks both).
using Kmem;

using var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2 });

Page page = m.AllocPages(Gfp.Kernel | Gfp.Zero, order: 2);   // 4 contiguous frames, zeroed; Page.Null on failure
Span<byte> bytes = m.PageSpan(page, order: 2);                // the frames' real bytes, in the direct map
bytes[0] = 42;
Console.Write(m.Proc.Buddyinfo());                            // /proc/buddyinfo, byte for byte
m.FreePages(page, order: 2);

using (m.OnCpu(1))                                            // pin this thread to CPU 1 (per-CPU lists, counters)
{
    nint address = m.GetZeroedPage(Gfp.Kernel);               // a real pointer; 0 on failure
    m.FreePage(address);
}

nint p = m.Kmalloc(100, Gfp.Kernel);                 // from kmalloc-128; 0 on failure
KmemCache cache = m.KmemCacheCreate("my_objects", 72, 0, SlabFlags.HwcacheAlign, null)!;
nint obj = m.KmemCacheAlloc(cache, Gfp.Kernel);
m.KmemCacheFree(cache, obj);
m.Kfree(p);

nint big = m.Vmalloc(1 << 20);                        // one contiguous MiB over scattered frames
m.Vfree(big);
Console.Write(m.Proc.Read("slabinfo"));              // also "vmallocinfo"

Console.WriteLine($"order-2 block at pfn {page.Pfn}, {bytes.Length} bytes; kmalloc {(p != 0 ? "ok" : "failed")}, "
    + $"cache object {(obj != 0 ? "ok" : "failed")}, vmalloc {(big != 0 ? "ok" : "failed")}; kernel log lines: {m.Log.Lines.Count}");
