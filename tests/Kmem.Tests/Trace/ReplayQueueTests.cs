// The replayer's bookkeeping structures against plain reference models, under random
// operation sequences: DeferredPageFrees (a queue with a moving head) against a List, and
// PcpContents (per-CPU lists linked through a node pool) against the same lists kept as
// LinkedLists. Same answers at every step: what each returns, the head matches and misses,
// and the frames a bulk allocation takes.
using CsCheck;

namespace Kmem.Tests.Trace;

public class ReplayQueueTests
{
    // 0: add, 1: remove the n oldest, 2: find a frame.
    private static readonly Gen<(int Op, ulong Pfn, int N)[]> s_queueOps =
        Gen.Select(Gen.Int[0, 2], Gen.ULong[0, 40], Gen.Int[0, 6]).Array[0, 400];

    [Fact]
    public void DeferredPageFreesIsAQueueInArrivalOrder()
    {
        s_queueOps.Sample(ops =>
        {
            var q = new DeferredPageFrees();
            var model = new List<(ulong Pfn, int Order, long Line)>();
            long line = 0;
            foreach (var (op, pfn, n) in ops)
            {
                switch (op)
                {
                    case 0:
                        var item = (pfn, n % 4, ++line);
                        q.Add(item);
                        model.Add(item);
                        break;
                    case 1:
                        int k = Math.Min(n, model.Count);
                        q.RemoveFirst(k);
                        model.RemoveRange(0, k);
                        break;
                    default:
                        Assert.Equal(model.FindIndex(d => d.Pfn == pfn), q.IndexOf(pfn));
                        break;
                }
                Assert.Equal(model.Count, q.Count);
                for (int i = 0; i < model.Count; i++)
                {
                    Assert.Equal(model[i], q[i]);
                }
            }
        });
    }

    // The lists as the replayer kept them before the node pool: LinkedLists and a map from frame to node.
    private sealed class LinkedModel(Kmem.PageAlloc.PageAllocator pa)
    {
        private readonly Dictionary<int, LinkedList<ulong>> _lists = [];
        private readonly Dictionary<ulong, LinkedListNode<ulong>> _where = [];
        private readonly Dictionary<ulong, byte> _allocMt = [];
        public long HeadMatches, HeadMisses;

        private LinkedList<ulong> List(int cpu, int zone, int order, int mt)
        {
            int key = ((cpu * pa.Zones.Length + zone) * 4 + order) * 3 + mt;
            if (!_lists.TryGetValue(key, out var list))
            {
                _lists[key] = list = new LinkedList<ulong>();
            }
            return list;
        }

        private void Forget(ulong pfn)
        {
            if (_where.Remove(pfn, out var node))
            {
                node.List!.Remove(node);
            }
        }

        public void Alloc(int cpu, ulong pfn, int order, MigrateType mt, List<ulong>? burst)
        {
            if (order >= 4 || (int)mt >= 3)
            {
                return;
            }
            _allocMt[pfn] = (byte)mt;
            var list = List(cpu, TraceZones.ZoneOf(pa, pfn).Index, order, (int)mt);
            if (burst is not null)
            {
                Refill(list, burst);
            }
            if (list.First is { } head && head.Value == pfn)
            {
                HeadMatches++;
            }
            else if (list.First is not null)
            {
                HeadMisses++;
            }
            Forget(pfn);
        }

        private void Refill(LinkedList<ulong> list, List<ulong> burst)
        {
            while (list.First is { } stale)
            {
                _where.Remove(stale.Value);
                list.RemoveFirst();
            }
            foreach (ulong p in burst)
            {
                Forget(p);
                _where[p] = list.AddLast(p);
            }
        }

        private void Take(LinkedList<ulong> list, List<ulong> taken, int pages)
        {
            while (taken.Count < pages && list.First is { } head)
            {
                _where.Remove(head.Value);
                list.RemoveFirst();
                taken.Add(head.Value);
            }
        }

        public void Free(int cpu, ulong pfn, int order)
        {
            Forget(pfn);
            if (order >= 4)
            {
                return;
            }
            int mt = _allocMt.Remove(pfn, out byte m) ? m : 0;
            _where[pfn] = List(cpu, TraceZones.ZoneOf(pa, pfn).Index, order, mt).AddFirst(pfn);
        }

        public void Drain(ulong pfn) => Forget(pfn);

        public List<ulong> TakeBulk(int cpu, int zone, MigrateType mt, int pages, List<ulong>? burst)
        {
            var taken = new List<ulong>(pages);
            if ((int)mt >= 3)
            {
                return taken;
            }
            var list = List(cpu, zone, 0, (int)mt);
            Take(list, taken, pages);
            if (burst is not null)
            {
                Refill(list, burst);
                Take(list, taken, pages);
            }
            return taken;
        }
    }

    // 0: alloc, 1: alloc after a refill burst, 2: free, 3: drain, 4: bulk, 5: bulk with a burst. Frames are few so
    // that they move between lists, orders and types run past the modelled ones.
    private static readonly Gen<(int Op, int Cpu, ulong Pfn, int Order, int Mt, ulong[] Burst)[]> s_pcpOps =
        Gen.Select(Gen.Int[0, 5], Gen.Int[0, 1], Gen.ULong[0, 23], Gen.Int[0, 4], Gen.Int[0, 3], Gen.ULong[0, 23].Array[1, 8]).Array[0, 300];

    [Fact]
    public void PcpContentsKeepsTheListsOfTheLinkedModel()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "64M", Cpus = 2, Seed = 1 });
        var pa = m.PageAllocator;
        s_pcpOps.Sample(ops =>
        {
            var pool = new PcpContents(pa, 2);
            var model = new LinkedModel(pa);
            foreach (var (op, cpu, pfn, order, mt, burstFrames) in ops)
            {
                var burst = burstFrames.Distinct().ToList();
                switch (op)
                {
                    case 0:
                    case 1:
                        pool.Alloc(cpu, pfn, order, (MigrateType)mt, op == 1 ? burst : null);
                        model.Alloc(cpu, pfn, order, (MigrateType)mt, op == 1 ? burst : null);
                        break;
                    case 2:
                        pool.Free(cpu, pfn, order);
                        model.Free(cpu, pfn, order);
                        break;
                    case 3:
                        pool.Drain(pfn);
                        model.Drain(pfn);
                        break;
                    default:
                        int zone = TraceZones.ZoneOf(pa, pfn).Index;
                        Assert.Equal(model.TakeBulk(cpu, zone, (MigrateType)mt, order + 1, op == 5 ? burst : null),
                            pool.TakeBulk(cpu, zone, (MigrateType)mt, order + 1, op == 5 ? burst : null));
                        break;
                }
                Assert.Equal(model.HeadMatches, pool.HeadMatches);
                Assert.Equal(model.HeadMisses, pool.HeadMisses);
            }
            // Whatever is left, list by list: every frame a bulk of every list can take, in order.
            for (int c = 0; c < 2; c++)
            {
                foreach (var z in pa.Zones)
                {
                    for (int t = 0; t < 3; t++)
                    {
                        Assert.Equal(model.TakeBulk(c, z.Index, (MigrateType)t, 64, null), pool.TakeBulk(c, z.Index, (MigrateType)t, 64, null));
                    }
                }
            }
        });
    }

    /// <summary>A frame allocated again is forgotten by every CPU's record of committed frees, so its next batched
    /// free is a free of its own; pfn 0 (the record's empty slot, which a corrupt trace may name) changes nothing.</summary>
    [Fact]
    public void AReallocatedFrameIsForgottenByEveryCpu()
    {
        var cpus = new[] { new DeferredPageFrees(0), new DeferredPageFrees(1) };
        cpus[0].NoteCommitted(0x1234);
        cpus[1].NoteCommitted(0x1234);
        cpus[1].NoteCommitted(0x5678);
        DeferredPageFrees.Reallocated(cpus, 0);
        DeferredPageFrees.Reallocated(cpus, 0x1234);
        Assert.False(cpus[0].TakeCommitted(0x1234));
        Assert.False(cpus[1].TakeCommitted(0x1234));
        Assert.True(cpus[1].TakeCommitted(0x5678));
    }
}
