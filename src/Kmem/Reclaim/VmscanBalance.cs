// The scan balance of page reclaim (mm/vmscan.c prepare_scan_count,
// get_scan_count, shrink_lruvec, shrink_list, inactive_is_low; mm/swap.c
// lru_note_cost): how many pages of each LRU list one shrink_node pass scans.
// Anon is scanned only while swap has free slots; at priority 0 both types
// equally; file only while the inactive file list is big enough and not being
// refilled (cache_trim_mode); anon only when the node is almost out of file
// pages (file_is_tiny); otherwise in the proportion of swappiness and the
// recent reclaim costs of each type. An active list is aged only when
// prepare_scan_count found its inactive list low. Kmem keeps no refault
// (workingset) history, so the costs come from pageouts alone and a list's
// "refaults changed" test never fires.
// Locking: the reclaim locks (ReclaimLocks) are held by the caller; the costs
// are lru_lock's (Lruvecs.Lock), which the caller holds among them.
using Kmem.PageAlloc;
using Kmem.Physical;

namespace Kmem.Reclaim;

/// <summary>enum scan_balance.</summary>
internal enum ScanBalance
{
    Equal,
    Fract,
    Anon,
    File,
}

internal sealed partial class Vmscan
{
    private const int DeactivateAnon = 1, DeactivateFile = 2;

    /// <summary>inactive_is_low: inactive × int_sqrt(10 × GiB of the pair) &lt; active (ratio 1 below 1 GiB).</summary>
    internal static bool InactiveIsLow(Lruvec vec, LruList inactive)
    {
        long inact = vec.Count[(int)inactive], act = vec.Count[(int)inactive + 1];
        long gb = (inact + act) >> (30 - PhysMem.PageShift);
        long ratio = gb > 0 ? (long)Math.Sqrt(10 * gb) : 1;
        return inact * ratio < act;
    }

    /// <summary>lru_note_cost: adds <paramref name="pages"/> to the type's cost and halves both costs once they
    /// exceed a quarter of the node's LRU pages.</summary>
    internal static void LruNoteCost(Lruvec vec, bool file, long pages)
    {
        if (pages <= 0)
        {
            return;
        }
        if (file)
        {
            vec.FileCost += pages;
        }
        else
        {
            vec.AnonCost += pages;
        }
        long lrusize = vec.Count[0] + vec.Count[1] + vec.Count[2] + vec.Count[3];
        if (vec.FileCost + vec.AnonCost > lrusize / 4)
        {
            vec.FileCost /= 2;
            vec.AnonCost /= 2;
        }
    }

    /// <summary>prepare_scan_count: the costs, which active lists may be aged, cache_trim_mode and file_is_tiny.</summary>
    internal static void PrepareScanCount(Node node, Lruvec vec, ref ScanControl sc)
    {
        sc.AnonCost = vec.AnonCost;
        sc.FileCost = vec.FileCost;
        sc.MayDeactivate = (InactiveIsLow(vec, LruList.InactiveAnon) ? DeactivateAnon : 0)
            | (InactiveIsLow(vec, LruList.InactiveFile) ? DeactivateFile : 0);
        sc.CacheTrimMode = (vec.Count[(int)LruList.InactiveFile] >> sc.Priority) != 0 && (sc.MayDeactivate & DeactivateFile) == 0;
        long free = 0, totalHigh = 0;
        foreach (var z in node.Zones)
        {
            free += Volatile.Read(ref z.VmstatFreePages); // sum_zone_node_page_state
            if (z.IsManaged)
            {
                totalHigh += z.WmarkPages(Zone.WmarkHigh);
            }
        }
        long file = vec.Count[(int)LruList.ActiveFile] + vec.Count[(int)LruList.InactiveFile];
        long anon = vec.Count[(int)LruList.InactiveAnon];
        sc.FileIsTiny = file + free <= totalHigh && (sc.MayDeactivate & DeactivateAnon) == 0 && (anon >> sc.Priority) != 0;
    }

    /// <summary>get_scan_count: the pages of each list to scan in this pass; returns the balance it chose.</summary>
    internal ScanBalance GetScanCount(Lruvec vec, ref ScanControl sc, long[] nr)
    {
        int swappiness = Swappiness;
        ScanBalance balance;
        ulong ap = 0, fp = 0;
        if (sc.NoSwap || !_swap.CanSwap)
        {
            balance = ScanBalance.File;
        }
        else if (sc.Priority == 0 && swappiness != 0)
        {
            balance = ScanBalance.Equal;
        }
        else if (sc.FileIsTiny)
        {
            balance = ScanBalance.Anon;
        }
        else if (sc.CacheTrimMode)
        {
            balance = ScanBalance.File;
        }
        else
        {
            balance = ScanBalance.Fract;
            // The cost of each type counts against it; the sum is there to keep the ratio from swinging wildly.
            ulong total = (ulong)(sc.AnonCost + sc.FileCost);
            ulong anonCost = total + (ulong)sc.AnonCost;
            ulong fileCost = total + (ulong)sc.FileCost;
            total = anonCost + fileCost;
            ap = (ulong)swappiness * (total + 1) / (anonCost + 1);
            fp = (ulong)(200 - swappiness) * (total + 1) / (fileCost + 1);
        }
        for (int l = 0; l < 4; l++)
        {
            bool file = l >= 2;
            long scan = LruSizeUpTo(vec, (LruList)l, sc.ReclaimIdx) >> sc.Priority;
            nr[l] = balance switch
            {
                ScanBalance.Fract => ap + fp == 0 ? 0 : (long)((ulong)scan * (file ? fp : ap) / (ap + fp)),
                ScanBalance.File => file ? scan : 0,
                ScanBalance.Anon => file ? 0 : scan,
                _ => scan,
            };
        }
        return balance;
    }

    /// <summary>lruvec_lru_size up to the request's highest zone.</summary>
    private long LruSizeUpTo(Lruvec vec, LruList lru, ZoneType highest)
    {
        long size = 0;
        foreach (var z in _pa.Nodes[vec.Nid].Zones)
        {
            if (z.Type <= highest)
            {
                size += _lru.ZoneLru[z.Index, (int)lru];
            }
        }
        return size;
    }

    /// <summary>shrink_node / shrink_lruvec: scan the lists by get_scan_count's targets in batches of 32; once
    /// enough is reclaimed (except in direct reclaim's first pass, proportional_reclaim, which scans the targets
    /// whole), stop the smaller type and cut the other to the share of its target still unscanned, and stop after
    /// the next batch (6.1 nudges once: the smaller type's lists are then empty); then age the anon list if it is
    /// low.</summary>
    public void ShrinkNode(Lruvec vec, ref ScanControl sc)
    {
        PrepareScanCount(_pa.Nodes[vec.Nid], vec, ref sc);
        var nr = new long[4];
        GetScanCount(vec, ref sc, nr);
        var targets = (long[])nr.Clone();
        bool proportionalReclaim = !sc.Kswapd && sc.Priority == DefPriority;
        long reclaimedBefore = sc.NrReclaimed;
        while (nr[(int)LruList.InactiveAnon] + nr[(int)LruList.ActiveFile] + nr[(int)LruList.InactiveFile] > 0)
        {
            for (int l = 0; l < 4; l++)
            {
                if (nr[l] == 0)
                {
                    continue;
                }
                long batch = Math.Min(nr[l], SwapClusterMax);
                nr[l] -= batch;
                ShrinkList((LruList)l, batch, vec, ref sc);
            }
            if (sc.NrReclaimed - reclaimedBefore < sc.NrToReclaim || proportionalReclaim)
            {
                continue;
            }
            long nrFile = nr[2] + nr[3], nrAnon = nr[0] + nr[1];
            if (nrFile == 0 || nrAnon == 0)
            {
                break;
            }
            int stop, other;
            long percentage;
            if (nrFile > nrAnon)
            {
                percentage = nrAnon * 100 / (targets[0] + targets[1] + 1);
                (stop, other) = (0, 2);
            }
            else
            {
                percentage = nrFile * 100 / (targets[2] + targets[3] + 1);
                (stop, other) = (2, 0);
            }
            nr[stop] = nr[stop + 1] = 0;
            for (int l = other; l <= other + 1; l++)
            {
                long scanned = targets[l] - nr[l];
                nr[l] = targets[l] * (100 - percentage) / 100;
                nr[l] -= Math.Min(nr[l], scanned);
            }
        }
        // Age the anon list even when none was scanned, while there is swap to age it for.
        KswapdAgeNode(vec, ref sc);
    }

    /// <summary>kswapd_age_node: background aging of the anon list before each pass, so that pages have a chance
    /// to be referenced before reclaim reaches them.</summary>
    public void KswapdAgeNode(Lruvec vec, ref ScanControl sc)
    {
        if (_swap.TotalSwapPages > 0 && InactiveIsLow(vec, LruList.InactiveAnon))
        {
            ShrinkActiveList(vec, LruList.ActiveAnon, SwapClusterMax, ref sc);
        }
    }

    /// <summary>shrink_list: an active list is aged only if prepare_scan_count allowed it.</summary>
    private void ShrinkList(LruList lru, long n, Lruvec vec, ref ScanControl sc)
    {
        if (((int)lru & 1) != 0)
        {
            if ((sc.MayDeactivate & (lru == LruList.ActiveFile ? DeactivateFile : DeactivateAnon)) != 0)
            {
                ShrinkActiveList(vec, lru, n, ref sc);
            }
            return;
        }
        ShrinkInactiveList(vec, lru, n, ref sc);
    }
}
