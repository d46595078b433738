// The page path's side of the tasks' page tables (ReplayPageTables does the work): a table
// frame the kernel allocated waits to be taken (a table's gfp, __GFP_ZERO | __GFP_ACCOUNT, is no
// slab page's, so the page path replays it at its event, before the user page whose fault finds
// it). Part of TraceReplayer.
namespace Kmem;

public sealed partial class TraceReplayer
{
    private readonly ReplayPageTables _tables;

    private void NotePageTables(ref TraceEvent e, int cpu)
    {
        if (ReplayPageTables.IsTableAlloc(e.Gfp, e.Order) && e.Pid > 0)
        {
            _tables.Note(e.Pfn, e.Gfp);
        }
    }
}
