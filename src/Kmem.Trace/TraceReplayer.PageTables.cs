// The page path's side of the tasks' page tables (ReplayPageTables does the work): a table
// frame the kernel allocated waits to be taken; before a user page, the waiting frames still
// held back on its CPU are replayed (they come before it in the trace), so its fault finds
// them. Part of TraceReplayer.
namespace Kmem;

public sealed partial class TraceReplayer
{
    private readonly ReplayPageTables _tables;

    private void NotePageTables(ref TraceEvent e, int cpu)
    {
        if (ReplayPageTables.IsTableAlloc(e.Gfp, e.Order) && e.Pid > 0)
        {
            _tables.Note(e.Pfn);
        }
        else if (PressureReplay.IsUserPage(in e))
        {
            // One pass, in trace order, without a closure: replaying a page touches no pending list, so after a
            // removal the next candidate is at the same index.
            for (int i = 0; i < _pendingCount[cpu]; i++)
            {
                var p = _pending[cpu][i];
                if (ReplayPageTables.IsTableAlloc(p.Gfp, p.Order) && _tables.IsQueued(p.Pfn))
                {
                    RemovePending(cpu, i--);
                    ReplayPageAlloc(p);
                }
            }
        }
    }
}
