// docs/memory-pressure.md's program: a swap file, a task whose address space is larger than the
// machine, the page cache, drop_caches and compact_memory, on a 128 MiB machine.
using Kmem;

using var m = Machine.Boot(new MachineOptions { Memory = "128M" });
string swapfile = Path.GetTempFileName();
m.Mkswap(swapfile, 64 << 20);                          // a real file with the kernel's swap header
m.Swapon(swapfile);                                    // /proc/swaps lists it, priority -2
TaskStruct t = m.CreateTask("worker")!;                // null when fork would fail (no kernel stack)
ulong a = t.Mmap(160 << 20);                           // address space only: pages come on first touch
t.Write(a, "hello"u8);                                 // faults in a zeroed GFP_HIGHUSER_MOVABLE page
var back = new byte[5];
t.Read(a, back);                                       // a swapped-out page would come back from the file
long score = m.OomScore(t);                            // /proc/<pid>/oom_score
string datafile = Path.GetTempFileName();
using (CachedFile f = m.OpenFile(datafile))
{
    f.Write(0, "cached"u8);                            // a dirty page in the page cache
    f.Fsync();                                         // now on disk
}
m.DropCaches(3);                                       // /proc/sys/vm/drop_caches
m.CompactMemory();                                     // /proc/sys/vm/compact_memory
Console.Write(m.Proc.Read("swaps"));
t.Exit();

// Touch 120 MiB of a second task: more than the machine can hold beside the kernel, so reclaim
// swaps pages out, and every byte still reads back.
TaskStruct big = m.CreateTask("grower")!;
ulong b = big.Mmap(120 << 20);
var page = new byte[4096];
for (ulong off = 0; off < 120 << 20; off += 4096)
{
    BitConverter.TryWriteBytes(page, off);
    big.Write(b + off, page);
}
int wrong = 0;
for (ulong off = 0; off < 120 << 20; off += 4096)
{
    big.Read(b + off, page);
    wrong += BitConverter.ToUInt64(page) == off ? 0 : 1;
}
Console.WriteLine($"read back \"{System.Text.Encoding.ASCII.GetString(back)}\", oom_score {score}; "
    + $"the cached file holds \"{File.ReadAllText(datafile)}\" on disk; "
    + $"120 MiB touched on a 128 MiB machine, {wrong} pages wrong; pswpout {m.Proc.Read("vmstat").Split('\n').First(l => l.StartsWith("pswpout ", StringComparison.Ordinal))[8..]}");
big.Exit();
m.Swapoff(swapfile);
File.Delete(swapfile);
File.Delete(datafile);
