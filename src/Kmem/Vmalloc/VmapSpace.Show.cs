// mm/vmalloc.c s_show: the text of /proc/vmallocinfo, read under the space's one
// lock so that busy and unpurged ranges are seen at one instant.
using System.Text;

namespace Kmem.Vmalloc;

internal sealed partial class VmapSpace
{
    /// <summary>/proc/vmallocinfo: busy areas by address, then the unpurged ones.</summary>
    public string Show()
    {
        var sb = new StringBuilder();
        string width = Layout.Start > uint.MaxValue ? "x16" : "x8";
        int[] perNode = new int[_pa.Nodes.Length];
        lock (_lock)
        {
            foreach (var vm in _busy.Values)
            {
                sb.Append($"0x{vm.Address.ToString(width)}-0x{(vm.Address + vm.Size).ToString(width)} {vm.Size,7}");
                if (vm.IsMapRam)
                {
                    sb.Append(" vm_map_ram\n");
                    continue;
                }
                sb.Append(' ').Append(vm.Caller);
                if (vm.NrPages > 0)
                {
                    sb.Append($" pages={vm.NrPages}");
                }
                AppendFlag(sb, vm, VmFlags.Ioremap, " ioremap");
                AppendFlag(sb, vm, VmFlags.Alloc, " vmalloc");
                AppendFlag(sb, vm, VmFlags.Map, " vmap");
                AppendFlag(sb, vm, VmFlags.UserMap, " user");
                AppendFlag(sb, vm, VmFlags.DmaCoherent, " dma-coherent");
                if (vm.PagesArray != 0 && Contains(vm.PagesArray))
                {
                    sb.Append(" vpages");
                }
                if (_numa && (vm.Flags & VmFlags.Uninitialized) == 0)
                {
                    Array.Clear(perNode);
                    for (int i = 0; i < vm.NrPages; i++)
                    {
                        perNode[_pa.ZoneOf(vm.Pages[i]).Node.Id]++;
                    }
                    for (int n = 0; n < perNode.Length; n++)
                    {
                        if (perNode[n] > 0)
                        {
                            sb.Append($" N{n}={perNode[n]}");
                        }
                    }
                }
                sb.Append('\n');
            }
            foreach (var (start, end) in _purge.Blocks())
            {
                sb.Append($"0x{start.ToString(width)}-0x{end.ToString(width)} {end - start,7} unpurged vm_area\n");
            }
        }
        return sb.ToString();
    }

    private static void AppendFlag(StringBuilder sb, VmStruct vm, VmFlags flag, string word)
    {
        if ((vm.Flags & flag) != 0)
        {
            sb.Append(word);
        }
    }
}
