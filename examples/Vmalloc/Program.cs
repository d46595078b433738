// docs/vmalloc-highmem.md's programs: one contiguous MiB over scattered frames, kvmalloc's choice,
// /proc/vmallocinfo, and a HighMem frame reached through kmap and kmap_local on a 32-bit PAE machine.
using System.Runtime.InteropServices;
using Kmem;

using (var m = Machine.Boot(new MachineOptions { Memory = "512M", Cpus = 2, Seed = 1 }))
{
    nint big = m.Vmalloc(1 << 20);                        // one contiguous MiB over scattered frames
    Marshal.Copy(new byte[1 << 20], 0, big, 1 << 20);     // every byte is real and writable
    Page first = m.VmallocToPage(big), last = m.VmallocToPage(big + (1 << 20) - 4096);
    Console.WriteLine($"vmalloc: 1 MiB at a kernel-style 0x{m.VmallocKernelAddress(big):x}, frames {first.Pfn} .. {last.Pfn}");
    nint small = m.Kvmalloc(64 << 10, Gfp.Kernel);        // kmalloc while it can, vmalloc otherwise
    Console.WriteLine($"kvmalloc of 64 KiB came from {(m.IsVmallocAddr(small) ? "vmalloc" : "kmalloc")}");
    Console.Write(m.Proc.Read("vmallocinfo"));
    m.Kvfree(small);
    m.Vfree(big);
}

using (var m = Machine.Boot(new MachineOptions { Memory = "2G", Cpus = 2, Preset = Preset.X86Pae, Seed = 1 }))
{
    Page high = m.AllocPages(Gfp.HighUser, order: 0);      // on x86-32 this lands in ZONE_HIGHMEM
    nint direct = m.PageAddress(high);                     // 0: a highmem frame has no direct-map address
    nint window = m.Kmap(high);                            // a pkmap slot; waits while every slot is taken
    Marshal.WriteInt64(window, 42);
    m.Kunmap(high);
    nint local = m.KmapLocalPage(high);                    // this thread's own slot, unmapped in LIFO order
    Console.WriteLine($"highmem: pfn {high.Pfn}, direct-map address {direct}, read back {Marshal.ReadInt64(local)} through kmap_local");
    m.KunmapLocal(local);
    m.FreePages(high, order: 0);
}
