"""Formats `kmem replay --json` outputs as docs/fidelity.md (called by scripts/fidelity.sh).

Arguments: triples of JSON file, capture title and capture folder. Every figure comes from the JSON,
except the count of slab frees whose kernel slab still held an object allocated before tracing began,
read from the capture's trace.txt.xz and slabinfo.txt; the text around the tables says what each
kind compares and what is aligned."""
import json
import lzma
import os
import re
import sys

KINDS = ["pcp_refill", "pcp_drain", "zone", "fallback", "fallback_ownership", "new_slab", "slab_freed"]


def pct(x):
    return f"{100 * x:.1f} %"


def rec(d):
    return pct(d["recall"]) if d["kernel_yes"] else "–"


def prec(d):
    return pct(d["precision"]) if d["kmem_yes"] else "–"


def row(kind, d):
    if d is None or d["compared"] == 0:
        return f"| {kind} | 0 | – | – | – | – | – | – |"
    amount = f"{d['amount_equal']}/{d['amount_compared']}" if d["amount_compared"] else "–"
    return (f"| {kind} | {d['compared']:,} | {pct(d['ratio'])} | {rec(d)} | {prec(d)} "
            f"| {d['kernel_yes']:,} | {d['kmem_yes']:,} | {d['both_yes']:,} / {amount} |")


HEAD = ("| kind | compared | ratio | recall | precision | kernel yes | Kmem yes | both yes / same amount |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|")


def table(title, decisions):
    lines = [f"**{title}**", "", HEAD]
    lines += [row(k, decisions.get(k)) for k in KINDS]
    return "\n".join(lines)


def capture(path, title, folder):
    j = json.load(open(path))
    out = [f"## {title}", "",
           f"{j['events']:,} events; {j['page_allocs_replayed']:,} page allocations and "
           f"{j['slab_page_allocs']:,} slab pages; {j['bulk_refill_bursts']:,} bulk-allocator refill bursts "
           f"({j['bulk_pages_replayed']:,} pages replayed); {j['unattributed_drains']:,} drains after no page free; "
           f"{j['batched_frees_counted_once']:,} batched frees counted once; {j['untracked_page_frees']:,} untracked page frees; "
           f"{j.get('page_tables_taken_over', 0):,} of the kernel's page-table frames taken over by Kmem's tasks, "
           f"{j.get('page_tables_own', 0):,} tables of their own.",
           "", table("aligned (decisions)", j.get("decisions", {})), "",
           table("free-running (decisions_free_running)", j["decisions_free_running"]), ""]
    out += ["### By phase", ""]
    out += ["| phase | kind | aligned ratio | aligned recall | aligned precision | free-running ratio | free-running recall | free-running precision |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for p in j["decisions_by_phase"]:
        for k in ["pcp_refill", "pcp_drain", "new_slab", "slab_freed", "fallback"]:
            a = p.get("decisions", {}).get(k)
            f = p["decisions_free_running"].get(k)
            if not f or f["compared"] == 0:
                continue
            cells = []
            for d in (a, f):
                cells += [pct(d["ratio"]), rec(d), prec(d)] if d else ["–"] * 3
            out.append(f"| {p['phase']} | {k} | " + " | ".join(cells) + " |")
    out += ["", "### Consequence totals", "", "| consequence | kernel (trace) | Kmem (free-running) |", "|---|---:|---:|"]
    for name, c in j["consequences"].items():
        out.append(f"| {name} | {c['trace']:,} | {c['kmem']:,} |")
    out += ["", "### Remaining gaps, counted", ""] + gaps(j, folder)
    out += ["", "### Trace checks (not fidelity)", ""]
    what = {"kmalloc_size_class_match": "Kmem's size_index table against the trace's bytes_alloc",
            "page_migratetype_match": "each mm_page_alloc's gfp_flags against its own migratetype"}
    for name, v in j["trace_checks"].items():
        out.append(f"- {name}: {pct(v)} ({what.get(name, 'a check of the trace')})")
    out.append("")
    return "\n".join(out)


def mismatches(decisions, kind):
    d = decisions.get(kind)
    return d.get("mismatches", []) if d else []


def pretrace_slabs(folder, lines):
    """For slab frees at the given trace lines: whether a later free in the trace is of an object of the same
    kernel slab (slabinfo's pages per slab, slabs aligned to their size) that no allocation in the trace gave:
    an object allocated before tracing began, still in that slab when the free ran."""
    pages = {}
    for line in open(os.path.join(folder, "slabinfo.txt")):
        f = line.split()
        if len(f) > 5 and not line.startswith(("#", "slabinfo")):
            pages[f[0]] = int(f[5])
    want = set(lines)
    # 6.1's kmem_cache_alloc event names no cache: every allocation's pointer counts as live.
    rx = re.compile(r": (kmem_cache_alloc|kmem_cache_free): .*?ptr=(\w+)(?:.*?name=(\S+))?")
    live, untracked, at = set(), {}, {}
    with lzma.open(os.path.join(folder, "trace.txt.xz"), "rt") as t:
        for n, line in enumerate(t, 1):
            m = rx.search(line)
            if not m:
                continue
            ev, ptr, name = m.group(1), int(m.group(2), 16), m.group(3)
            if ev == "kmem_cache_alloc":
                live.add(ptr)
                continue
            if ptr in live:
                live.discard(ptr)
            else:
                untracked.setdefault(name, []).append((n, ptr))
            if n in want:
                at[n] = (name, ptr)
    held = set()
    for n, (name, ptr) in at.items():
        span = 4096 * pages.get(name, 1)
        if any(later > n and q // span == ptr // span for later, q in untracked.get(name, [])):
            held.add(n)
    return held


def gaps(j, folder):
    """Every disagreement of the aligned run, sorted by what the trace revealed before it."""
    a = j.get("decisions", {})
    out = []
    refill = mismatches(a, "pcp_refill")
    hidden = sum(1 for m in refill if "not revealed" in m["detail"])
    missed = [m for m in refill if m["kernel"] and not m["kmem"] and "held" in m["detail"]]
    extra = [m for m in refill if m["kmem"] and not m["kernel"] and "not revealed" not in m["detail"]]
    out.append(f"- pcp_refill, aligned: {len(refill):,} disagreements; {hidden:,} on a list the trace had not "
               f"revealed (a trace not recorded from boot, before the list's first refill, or after a burst of "
               f"a bulk allocation of unknown size); {len(missed):,} where the kernel refilled a list the model "
               f"still counted blocks on (a freed page goes to the list of the type it was allocated with, while "
               f"6.1 uses its pageblock's type at the free; a bulk allocation no page array announced); "
               f"{len(extra):,} where Kmem refilled a list the model counted as holding blocks (Kmem's refill "
               f"found the buddy lists short, or the model's list was wrong): unexplained beyond that.")
    drain = mismatches(a, "pcp_drain")
    kmem_only = sum(1 for m in drain if m["kmem"] and not m["kernel"])
    kernel_only = sum(1 for m in drain if m["kernel"] and not m["kmem"])
    d = a.get("pcp_drain") or {}
    out.append(f"- pcp_drain, aligned: {kmem_only:,} frees where only Kmem drained and {kernel_only:,} where only "
               f"the kernel did; the drained amount equals the kernel's on {d.get('amount_equal', 0):,} of the "
               f"{d.get('amount_compared', 0):,} drains both made. The CPU's count is revealed only at a drain "
               f"(high less what it drained); between drains it is the model's sum of the frees, allocations and "
               f"refills since, and a bulk allocation no event shows (alloc_pages_bulk from the list) leaves it too "
               f"high. When the model's count reaches high at a free the kernel did not drain at, the count is "
               f"unknown until the next drain (or until every list of the CPU is known again) and Kmem keeps its "
               f"own, at most high − 1. Of the Kmem-only drains, "
               f"{sum(1 for m in drain if m['kmem'] and not m['kernel'] and 'count not revealed' in m['detail']):,} "
               f"came at a count not revealed, "
               f"{sum(1 for m in drain if m['kmem'] and not m['kernel'] and 'count revealed' in m['detail'] and 'not' not in m['detail']):,} "
               f"at a revealed one (the rest freed a page the replay could not align).")
    phases = [(p["phase"], p.get("decisions", {}).get("pcp_drain")) for p in j.get("decisions_by_phase", [])]
    extra = sorted(((d["kmem_yes"] - d["both_yes"], name, d) for name, d in phases if d and d["kmem_yes"]), key=lambda t: (-t[0], t[1]))
    if extra and extra[0][0] > 0:
        top_name, top = extra[0][1], extra[0][2]
        rest = [d for _, name, d in extra if name != top_name]
        both = sum(d["both_yes"] for d in rest)
        yes = sum(d["kmem_yes"] for d in rest)
        out.append(f"  By phase: {extra[0][0]:,} of them in {top_name} ({top['kmem_yes']:,} Kmem drains, "
                   f"{top['kernel_yes']:,} of the kernel's); in the other phases together precision is "
                   f"{pct(both / yes) if yes else '–'} ({both:,} of {yes:,}).")
    for kind in ("new_slab", "slab_freed"):
        m = mismatches(a, kind)
        k_only = sum(1 for x in m if x["kernel"] and not x["kmem"])
        y_only = [x["line"] for x in m if x["kmem"] and not x["kernel"]]
        caches = {}
        for x in m:
            caches[x["detail"]] = caches.get(x["detail"], 0) + 1
        top = ", ".join(f"{c or 'no cache named'} {n:,}" for c, n in sorted(caches.items(), key=lambda kv: -kv[1])[:4])
        text = f"- {kind}, aligned: {k_only:,} kernel-only and {len(y_only):,} Kmem-only" + (f" (most in {top})" if top and kind == "new_slab" else "") + "."
        if kind == "slab_freed":
            sf = a.get("slab_freed") or {}
            text += (f" Not compared: {sf.get('unknown_state', 0):,} frees into a kernel slab the trace never showed "
                     f"allocated (it predates the trace and may hold objects allocated before tracing began, whose "
                     f"number no event reveals: its occupancy is unknown).")
            if y_only and os.path.exists(os.path.join(folder, "trace.txt.xz")):
                held = len(pretrace_slabs(folder, y_only))
                text += (f" Of the Kmem-only frees compared, {held:,} emptied a slab into which the trace later frees "
                         f"an object it never showed allocated (kmem_cache_alloc_bulk, as skbuff_head_cache's per-CPU "
                         f"cache and maple_node use it, allocates with no per-object event, so that slab was not empty "
                         f"in the kernel and nothing revealed it); "
                         f"the others emptied a slab the kernel kept: 6.1's SLUB keeps an empty slab while it is frozen "
                         f"(a cpu or cpu-partial slab) or while the node has fewer than min_partial partial slabs, and "
                         f"neither the cpu-partial lists nor the node's partial count (pre-trace slabs included) is "
                         f"revealed by an event: unexplained beyond that.")
        else:
            text += (" The first new slab of each cache is decided from Kmem's own state; after it the cache follows "
                     "the kernel's until objects allocated before tracing are freed in another order than Kmem's "
                     "placeholders stand for them.")
        out.append(text)
    fb = a.get("fallback")
    if fb:
        steals = "steal" if fb['kernel_yes'] == 1 else "steals"
        text = f"- fallback: {fb['kernel_yes']:,} kernel {steals} against {fb['kmem_yes']:,} of Kmem's, {fb['both_yes']:,} on the same allocation"
        if fb['both_yes'] == fb['kernel_yes'] == fb['kmem_yes']:
            text += "."
        else:
            text += ": the buddy lists that decide a steal are not aligned."
        offsets = steal_offsets(folder, mismatches(a, "fallback"))
        if offsets:
            common = max(set(offsets), key=offsets.count)
            y_only = sum(1 for m in mismatches(a, "fallback") if m["kmem"] and not m["kernel"])
            text += (f" Of Kmem's {y_only:,} steals the kernel did not make, {len(offsets):,} are followed by a kernel "
                     f"steal before Kmem's next, and {offsets.count(common):,} of those come exactly {common:,} pages of "
                     f"allocations of the same migrate type before it: the same steals, one constant offset apart. "
                     f"An order-0 steal means the type's free lists were empty; Kmem's ran out {common:,} pages sooner "
                     f"(its free pages of that type were fewer than the kernel's, which no event reveals), and each "
                     f"steal then takes a block of the same size on both sides (the trace's fallback_order), so the "
                     f"offset stays.")
        out.append(text)
    return out


def steal_offsets(folder, fallback):
    """For each Kmem-only steal: the pages of page allocations of its migrate type between it and the next
    kernel-only steal (none when no kernel steal follows before the next Kmem one)."""
    path = os.path.join(folder, "trace.txt.xz")
    kmem = sorted(m["line"] for m in fallback if m["kmem"] and not m["kernel"])
    kernel = sorted(m["line"] for m in fallback if m["kernel"] and not m["kmem"])
    if not kmem or not kernel or not os.path.exists(path):
        return []
    rx = re.compile(r": mm_page_alloc: .*?order=(\d+) migratetype=(\d+)")
    last = max(kernel)
    allocs = {}
    with lzma.open(path, "rt") as t:
        for n, line in enumerate(t, 1):
            if n > last:
                break
            m = rx.search(line)
            if m:
                allocs[n] = (1 << int(m.group(1)), int(m.group(2)))
    offsets = []
    for i, y in enumerate(kmem):
        k = next((k for k in kernel if k > y), None)
        if k is None or (i + 1 < len(kmem) and kmem[i + 1] < k):
            continue
        mt = allocs.get(y, (0, 0))[1]
        offsets.append(sum(p for n, (p, t) in allocs.items() if y <= n < k and t == mt))
    return offsets


def main(args):
    parts = [PREAMBLE]
    for i in range(0, len(args), 3):
        parts.append(capture(args[i], args[i + 1], args[i + 2]))
    parts.append(GAPS)
    print("\n".join(parts))


PREAMBLE = """# Fidelity of the replay

Generated by `scripts/fidelity.sh` (rerun it after a change; every number below comes from
`kmem replay --json` at seed 1). For each event where the kernel and Kmem both made a decision,
the replay sets Kmem's decision, taken from Kmem's own allocator through observer hooks in the
page allocator and the slab layer, against the kernel's, read from the events around it on the
same CPU. A "yes" is the event the kind names; recall is both-yes / kernel-yes, precision
both-yes / Kmem-yes.

| kind | the decision | the kernel's answer |
|---|---|---|
| pcp_refill | a page allocation of order ≤ 3 refilled the per-CPU list | the zone_locked percpu_refill=1 burst just before it starts at its pfn |
| pcp_drain | a page free drained the per-CPU lists (same amount: pages drained) | mm_page_pcpu_drain events after it (after its mm_page_free_batched for a list free) |
| zone | zone of the page ("yes": below the highest zone the gfp allows) | zone of the kernel's pfn |
| fallback | the allocation stole from another migrate type | mm_page_alloc_extfrag since the CPU's last allocation |
| fallback_ownership | when both stole: the pageblock changed owner | change_ownership |
| new_slab | a slab allocation needed a new slab | the slab page allocated for it |
| slab_freed | a slab free gave the slab's pages back | the next event on the CPU frees one of the kernel's slab frames |

**Aligned**: after each event Kmem's state is corrected to what the trace has revealed so far, and
Kmem then makes the next decision on its own; an event's own outcome never corrects its decision.
Per-CPU lists (pcp_refill, pcp_drain), before each page allocation and page free: each list's length
and the CPU's count and free_factor, as revealed by a trace recorded from boot (the lists start
empty), a refill an allocation claimed (the list was empty, then held the burst's blocks less one),
allocations from the list, frees to it, each drained block, the count at a drain (high less what it
drained), and vmalloc's bulk allocations, whose size the page array kmalloc'ed just before them
gives (alloc_pages_bulk takes that many pages from the list with no event). Lists the trace has not
revealed are left as Kmem has them. Slab caches (new_slab, slab_freed): after a kernel slab
allocation that took a new slab, the cache's cpu slab holds that slab with one object taken and no
partial slab has a free object; where Kmem's cache still had free objects, the replay takes them as
placeholders until Kmem takes a new slab too (a free of an object allocated before tracing gives one
back). slab_freed is compared only where the kernel's slab is one the trace showed allocated: a
slab that predates the trace may hold objects allocated before tracing began, so whether the free
emptied it is unknown; those frees are counted as `unknown_state` in the JSON, in both runs, and
read from the frames seen up to the free, never from the kernel's page free of that slab. zone and
fallback are not aligned (the buddy lists are not revealed event by event): their
aligned figures are those of a run whose lists and caches were aligned. **Free-running**: Kmem's
state evolves on its own; both runs replay the bulk allocator's pages (the frames the kernel's lists
held at their head, known from the same events). User pages are pages of Kmem tasks (the pressure
replay); their page tables are the kernel's own page-table frames (GFP_PGTABLE_USER), taken over
from the page path, so a fault does not allocate a second table on top of the kernel's.
"""

GAPS = """## Remaining gaps, free-running

- Free-running pcp_refill and pcp_drain match only where the two lists are in step: a refill comes
  when one list is empty, a drain when the CPU's count reaches high, and one page more or less on
  either side moves every later one. The count is the sum of every page that went through the
  CPU's lists since the last drain both made, and the slab layer's pages are Kmem's own: its
  caches start empty, while the kernel's slabs already held objects allocated before tracing
  began, so Kmem takes new slabs where the kernel took none (new_slab free-running, boot phase,
  above) and its lists are refilled and drained at other events from the trace's first lines on.
- Aligned, the drained amount (nr_pcp_free: batch doubled per drain without an allocation between,
  clamped to high − batch; the whole count for a high-order free after one) is the kernel's where
  Kmem's pcp high is: the boot reserve (docs/trace-replay.md) makes it the kernel's on both captures.
- fallback: a steal depends on the buddy lists of every order and type, which no event reveals one
  by one; Kmem's free blocks are other frames than the kernel's, so its steals come at other
  allocations (the totals are close: see the consequence totals). On capture B the boot phase's
  order-0 unmovable steals (the trace ring buffer's pages, __rb_allocate_pages) come one order-10
  block (1,024 pages) apart on both sides, Kmem's a constant number of pages early (above). The
  per-CPU allocator's first chunk no longer adds to it: as 6.1's pcpu_embed_first_chunk takes its
  units from memblock (atom-aligned, top-down, goal __pa(MAX_DMA_ADDRESS)), Kmem claims them from
  the frames boot reserved (BootReservations), so they never pass the buddy lists, where Kmem used
  to take an order-9 block at the trace's first percpu_alloc_percpu; that halved the offset, from
  186 pages to 93 (62 after the steal at which Kmem's count gains one refill batch of 31). What
  remains is the phase of the 1,024-page cycle at the trace's start, set before tracing began:
  the kernel's first refills take the last 37 frames of its unmovable block 0x8000-0x83ff
  (0x83db-0x83ff) and it steals the next block at trace line 214, so about 987 of that block's pages
  were taken before tracing, by allocations no event shows; Kmem's machine, replayed up to the same
  point, has used 31 pages of its first unmovable block (one order-0 refill of its own boot) and
  holds the other 993 free. The difference moves every later steal by the same amount and is not
  revealed by any event at the decision; the first slab of each cache, which Kmem takes where the
  kernel's caches already had slabs, adds to it. Not modelled either: the boot pagesets (batch 1,
  high 0) that 6.1 uses until setup_per_cpu_pageset, after trace_init, so each of the trace's first
  page allocations refills one block; tried, they raise free-running boot refills from 20 to 25
  both-yes on capture B and leave the aligned steals as they are (the aligned run corrects the
  lists anyway), but the switch cannot be read from every trace (the i386 capture's percpu events
  carry the inlined __alloc_percpu as their call site, not setup_zone_pageset).
- On the i386 capture the aligned run now steals once more than the kernel (2 against 1, one on
  the same allocation): at trace line 925,003, an order-0 unmovable HighMem page for a page table
  (GFP_KERNEL_ACCOUNT|__GFP_HIGHMEM|__GFP_ZERO), Kmem's HighMem unmovable block, taken at the
  kernel's own steal at line 303, has run out where the kernel's lasts to the trace's end. Before
  the first chunk's fix it did not (the chunk then came from ZONE_NORMAL, so this is not its pages
  directly); unexplained beyond that.
- Free-running pcp_refill on capture B fell from 851 both-yes (37.7 %) to 78 with the first chunk's
  fix: the order-9 block Kmem used to take at the trace's first percpu_alloc_percpu gave 388 pages
  back through CPU 0's lists, which left its unmovable order-0 list at a count that happened to stay
  in step with the kernel's through the boot phase (83 % there). That was a side effect of a wrong
  allocation, not the pcp policy; without it Kmem's refills come a constant few dozen allocations
  off the kernel's from the first burst on (trace lines 2,211 against 2,260, then every ~93 lines),
  because its own slab pages (caches that start empty) and its boot refill differ from the kernel's,
  as the paragraph above on the lists explains.
"""

if __name__ == "__main__":
    main(sys.argv[1:])
