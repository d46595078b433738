// The debug-VM checks: in the DebugVm configuration (`dotnet test tests/Kmem.Tests -c DebugVm`)
// a broken invariant throws at once; in every other build the checks are compiled out. Each test
// asserts whichever of the two this build is, so neither configuration runs an empty test.
using Kmem.Physical;

namespace Kmem.Tests.Diagnostics;

public class VmBugTests
{
    [Fact]
    public void VmBugOnThrowsOnlyInTheDebugVmBuild()
    {
        if (VmBug.Enabled)
        {
            var e = Assert.Throws<VmBugException>(() => VmBug.On(1 + 1 == 2));
            Assert.Contains("VM_BUG_ON(1 + 1 == 2)", e.Message, StringComparison.Ordinal);
            Assert.Contains(nameof(VmBugOnThrowsOnlyInTheDebugVmBuild), e.Message, StringComparison.Ordinal);
        }
        else
        {
            VmBug.On(true); // compiled out: must not throw
        }
    }

    [Fact]
    public void LockdepAssertionsFollowTheLockState()
    {
        var held = new Lock();
        if (!VmBug.Enabled)
        {
            VmBug.LockdepAssertHeld(held);
            return;
        }
        Assert.Throws<VmBugException>(() => VmBug.LockdepAssertHeld(held));
        lock (held)
        {
            VmBug.LockdepAssertHeld(held);
            var e = Assert.Throws<VmBugException>(() => VmBug.LockdepAssertNotHeld(held));
            Assert.Contains("circular locking dependency", e.Message, StringComparison.Ordinal);
        }
        VmBug.LockdepAssertNotHeld(held);
    }

    [Fact]
    public void ACorruptListLinkIsCaughtWhenTheEntryIsDeleted()
    {
        using var m = Machine.Boot(new MachineOptions { Memory = "128M", Cpus = 1, Seed = 1 });
        // Two frames the test owns: their list links are free for a private list.
        Page block = m.AllocPages(Gfp.Kernel, order: 1);
        uint a = (uint)block.Pfn, b = a + 1;
        var list = PfnList.Empty;
        list.AddTail(m.Mem, a);
        list.AddTail(m.Mem, b);
        m.Mem.Frame(b).Prev = PhysMem.NoPfn; // b now claims to be the head, which it is not
        if (VmBug.Enabled)
        {
            var e = Assert.Throws<VmBugException>(() => list.Remove(m.Mem, b));
            Assert.Contains("VM_BUG_ON", e.Message, StringComparison.Ordinal);
            Assert.Throws<VmBugException>(() => list.AddHead(m.Mem, a)); // a double add
        }
        else
        {
            list.Remove(m.Mem, b); // unchecked: the corruption goes unnoticed
        }
        m.Mem.Frame(a).Next = m.Mem.Frame(a).Prev = PhysMem.NoPfn;
        m.Mem.Frame(b).Next = m.Mem.Frame(b).Prev = PhysMem.NoPfn;
        m.FreePages(block, order: 1);
        Assert.Contains("DMA32", m.Proc.Buddyinfo(), StringComparison.Ordinal);
    }
}
