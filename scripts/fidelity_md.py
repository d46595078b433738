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
    OWN_TABLES[folder] = j.get("page_tables_own")
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
    out += ["", "### Remaining gaps, counted", ""] + gaps(j, folder) + drift(j)
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
            held_objects = sum(1 for x in m if x["kmem"] and not x["kernel"] and "still holds" in x["detail"])
            held_none = [x["line"] for x in m if x["kmem"] and not x["kernel"] and "holds no traced" in x["detail"]]
            kept_busy = sum(1 for x in m if x["kernel"] and not x["kmem"] and "Kmem's slab holds" in x["detail"])
            kept_frozen = sum(1 for x in m if x["kernel"] and not x["kmem"] and "frozen" in x["detail"])
            kept_partial = sum(1 for x in m if x["kernel"] and not x["kmem"] and "min_partial" in x["detail"] and "<" in x["detail"])
            kept_other = k_only - kept_busy - kept_frozen - kept_partial
            text += (f" Counted from the replay's own state at each free (the JSON mismatch details): of the "
                     f"{len(y_only):,} Kmem-only frees, {held_objects:,} came where the kernel's slab of the object "
                     f"still held objects the trace showed allocated and not yet freed, so the kernel's slab was not "
                     f"empty whatever its list: Kmem's slab and the kernel's held other objects (which slab an "
                     f"allocation is served from, not the discard policy); {len(held_none):,} where the kernel's slab "
                     f"held no traced object")
            if held_none and os.path.exists(os.path.join(folder, "trace.txt.xz")):
                bulk = len(pretrace_slabs(folder, held_none))
                text += (f", {bulk:,} of them a slab into which the trace later frees an object it never showed "
                         f"allocated (kmem_cache_alloc_bulk, as skbuff_head_cache's per-CPU cache and maple_node use "
                         f"it, allocates with no per-object event, so that slab was not empty in the kernel)")
            text += (f": the kernel kept a slab that was empty by the trace, which 6.1's __slab_free does while the "
                     f"slab is frozen (a cpu or cpu-partial slab) or its node has fewer than min_partial partial "
                     f"slabs, and neither is revealed by an event. Of the {k_only:,} kernel-only frees, "
                     f"{kept_busy:,} left Kmem's slab with objects in use (again other objects in it than in the "
                     f"kernel's), {kept_frozen:,} left it empty and frozen, {kept_partial:,} empty on a node below "
                     f"min_partial" + (f", {kept_other:,} not read" if kept_other else "") + ". A kernel free that "
                     f"does not free its slab's frame says only that the kernel's slab stayed, not why; a correction "
                     f"would have to move objects between Kmem's slabs, which no free can do, so slab_freed is "
                     f"aligned only through new_slab (the slab an allocation opens).")
        else:
            text += (" The first new slab of each cache is decided from Kmem's own state; after it the cache follows "
                     "the kernel's until objects allocated before tracing are freed in another order than Kmem's "
                     "placeholders stand for them.")
        out.append(text)
    fb = a.get("fallback")
    if fb:
        steals = "steal" if fb['kernel_yes'] == 1 else "steals"
        text = (f"- fallback, aligned: {fb['kernel_yes']:,} kernel {steals} against {fb['kmem_yes']:,} of Kmem's, "
                f"{fb['both_yes']:,} on the same allocation")
        fbm = mismatches(a, "fallback")
        if not fbm:
            text += "."
        else:
            offsets = steal_offsets(folder, fbm)
            y_only = [m for m in fbm if m["kmem"] and not m["kernel"]]
            k_only = [m for m in fbm if m["kernel"] and not m["kmem"]]
            gfps = trace_gfps(folder, [m["line"] for m in y_only])
            nested = [m for m in y_only if "Kmem's steal" in m["detail"] and not steal_for_request(m)]
            tables = sum(1 for m in y_only if gfps.get(m["line"], "").startswith("GFP_KERNEL_ACCOUNT|__GFP_ZERO") and m not in nested)
            other = len(y_only) - len(offsets) - len(nested) - sum(
                1 for m in y_only if gfps.get(m["line"], "").startswith("GFP_KERNEL_ACCOUNT|__GFP_ZERO") and m not in nested)
            if y_only:
                text += (f". Of Kmem's {len(y_only):,} {'steal' if len(y_only) == 1 else 'steals'} the kernel did not make ("
                         f"{line_list(y_only)}), {len(offsets):,} followed by a "
                         f"kernel steal before Kmem's next (the same steal a few allocations apart"
                         + (f": {', '.join(str(o) for o in offsets)} pages of allocations of the type between" if offsets else "")
                         + f"), {len(nested):,} were for another type or zone than the allocation's own (an allocation "
                         f"Kmem made inside the replayed call, such as a user fault's own page table), {tables:,} came at "
                         f"the kernel's user page-table allocations (GFP_PGTABLE_USER) after which the kernel stole no "
                         f"more of that type: Kmem's tasks also allocate tables of their own "
                         f"({a_own(folder)}), from the same unmovable lists, so Kmem's lists run out where the kernel's "
                         f"do not" + (f"; {other:,} other: unexplained beyond that" if other > 0 else "") + ".")
            else:
                text += ". Kmem made no steal the kernel did not make."
            if k_only:
                text += (f" Of the {len(k_only):,} kernel {'steal' if len(k_only) == 1 else 'steals'} Kmem did not make ("
                         f"{line_list(k_only)}), "
                         f"{sum(1 for m in k_only if any(o['kmem'] and not o['kernel'] and o['line'] < m['line'] for o in fbm)):,} "
                         f"follow a Kmem-only one, the rest came where Kmem's lists still held a block of the order: "
                         f"before the first steal aligned, or where Kmem had taken fewer pages of the type since.")
        out.append(text)
    return out


def line_list(ms):
    """The trace lines of mismatches: "line N" or "lines N, M"."""
    return ("line " if len(ms) == 1 else "lines ") + ", ".join(f"{m['line']:,}" for m in ms)


def steal_for_request(m):
    """Whether a fallback mismatch's Kmem steal (its detail: "Kmem's steal: ZONE TYPE from TYPE, ...") was for the
    trace allocation's own migrate type (TRACE_MT, filled by trace_gfps); a steal for another type was made by an
    allocation nested in the replayed call. Unknown lines count as the allocation's own."""
    return TRACE_MT.get(m["line"]) is None or f"Kmem's steal: " not in m["detail"] or \
        m["detail"].split("Kmem's steal: ")[1].split(" ")[1] == TRACE_MT[m["line"]]


TRACE_MT = {}
OWN_TABLES = {}


def a_own(folder):
    n = OWN_TABLES.get(folder)
    return f"{n:,} in this replay" if n is not None else "page_tables_own"


def trace_gfps(folder, lines):
    """The gfp_flags (and, into TRACE_MT, the migrate type's name) of the mm_page_alloc at each trace line."""
    path = os.path.join(folder, "trace.txt.xz")
    want = set(lines)
    out = {}
    if not want or not os.path.exists(path):
        return out
    names = {0: "Unmovable", 1: "Movable", 2: "Reclaimable"}
    rx = re.compile(r"migratetype=(\d+) gfp_flags=(\S+)")
    last = max(want)
    with lzma.open(path, "rt") as t:
        for n, line in enumerate(t, 1):
            if n > last:
                break
            if n in want:
                m = rx.search(line)
                if m:
                    out[n] = m.group(2)
                    TRACE_MT[n] = names.get(int(m.group(1)), m.group(1))
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


def table_frames(folder):
    """Facts of a capture's trace: the page-table pages its tasks' address spaces took (order-0 GFP_PGTABLE_USER,
    and with __GFP_HIGHMEM, HIGHPTE's PTE tables) and the PGDs pgd_alloc took from a slab cache."""
    counts = {"plain": 0, "highpte": 0, "pgd_cache": 0}
    path = os.path.join(folder, "trace.txt.xz")
    if not folder or not os.path.exists(path):
        return counts
    with lzma.open(path, "rt") as t:
        for line in t:
            if " mm_page_alloc: " in line and " order=0 " in line:
                if line.rstrip().endswith("gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO"):
                    counts["plain"] += 1
                elif line.rstrip().endswith("gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_HIGHMEM|__GFP_ZERO"):
                    counts["highpte"] += 1
            elif " kmem_cache_alloc: call_site=pgd_alloc+" in line:
                counts["pgd_cache"] += 1
    return counts


DRIFT_CLASSES = [
    ("start", "start"), ("page", "page"), ("slab_page", "slab"), ("user_page", "user"), ("page_table", "tables"),
    ("untracked_free", "untracked"), ("reserved_release", "reserved"), ("bulk", "bulk"), ("percpu", "percpu"),
    ("other", "other"), ("unseen", "unseen"), ("refill", "refill"), ("drain", "drain"),
]


def drift(j):
    """The free-running run's per-CPU count drift (pcp_drift), phase by phase, and what moved it."""
    phases = j.get("pcp_drift") or []
    if not phases:
        return []
    used = [(key, head) for key, head in DRIFT_CLASSES
            if any(p["classes"].get(key, {}).get("kernel_pages", 0) or p["classes"].get(key, {}).get("kmem_pages", 0) for p in phases)]
    out = ["- pcp drift, free-running: how far Kmem's per-CPU count strays from the kernel's and which events "
           "moved it. The kernel's count is rebuilt from its events (a trace from boot starts with empty lists; "
           "each allocation of order ≤ 3 from the list, refill burst, free, drain and bulk allocation of known "
           "size moves it) and revealed at each kernel drain (high less what it drained, or 0 after a free_high "
           "drain); Kmem's is read from its lists. *Reveals*: kernel drains where Kmem's count of the same CPU "
           "and zone was compared (equal / less than a batch away / mean Kmem − kernel after the free's drains); "
           "*refills*: kernel refills (the kernel's list was empty) where Kmem's same list was empty too, just "
           "before Kmem's allocation for it. Then, per class of events, the pages they put on the lists (taken "
           "off: negative), Kmem's less the kernel's: their sum over a phase is the change of the difference "
           "Kmem − kernel it made. page: page allocations and frees the replay mirrors; slab: slab pages (the "
           "kernel's slab frames against Kmem's own slab layer's); user and tables: user pages and page tables "
           "(Kmem's tasks, the pressure replay: a table of Kmem's own "
           "is one page the kernel never took); untracked: frees of frames the replay never saw allocated (the "
           "kernel put them on its list; Kmem frees a stand-in taken off its buddy lists, and has none to free when "
           "those hold no movable page); bulk: alloc_pages_bulk; unseen: what a "
           "reveal showed the kernel's count off by (pages no event accounts for); refill and drain: each side's "
           "own, the consequence of the count and lists being elsewhere, not a cause. Kernel pages per class are "
           "in the JSON (pcp_drift).", "",
           "| phase | reveals | equal | < batch | mean Kmem − kernel | refills: Kmem's list empty | "
           + " | ".join(h for _, h in used) + " |",
           "|---|---:|---:|---:|---:|---:|" + "---:|" * len(used)]
    for p in phases:
        mean = f"{p['diff'] / p['reveals']:+.1f}" if p["reveals"] else "–"
        lists = f"{p['list_empty']:,} of {p['list_reveals']:,}" if p["list_reveals"] else "–"
        cells = []
        for key, _ in used:
            c = p["classes"].get(key)
            cells.append(f"{c['kmem_pages'] - c['kernel_pages']:+,}" if c else "0")
        out.append(f"| {p['phase']} | {p['reveals']:,} | {p['equal']:,} | {p['within_batch']:,} | {mean} | {lists} | "
                   + " | ".join(cells) + " |")
    return out + [""]


def main(args):
    parts = [PREAMBLE]
    for i in range(0, len(args), 3):
        parts.append(capture(args[i], args[i + 1], args[i + 2]))
    jsons = [json.load(open(args[i], encoding="utf-8")) for i in range(0, len(args), 3)]
    parts.append(gaps_text(jsons[0], jsons[1] if len(jsons) > 1 else {}, args[5] if len(args) > 5 else ""))
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
gives (alloc_pages_bulk takes that many pages from the list with no event). "High" is nr_pcp_high's:
four batches while the kernel's kswapd reclaims (ZONE_RECLAIM_ACTIVE, taken as set from its
mm_vmscan_kswapd_wake while its events keep coming, until a 5 ms gap or its mm_vmscan_kswapd_sleep),
and Kmem's zones take that flag too. Lists the trace has not revealed are left as Kmem has them, and
so are the lists of a zone Kmem's page is in when the kernel's frame is in another. Slab caches (new_slab, slab_freed): after a kernel slab
allocation that took a new slab, the cache's cpu slab holds that slab with one object taken and no
partial slab has a free object; where Kmem's cache still had free objects, the replay takes them as
placeholders until Kmem takes a new slab too (a free of an object allocated before tracing gives one
back). slab_freed is compared only where the kernel's slab is one the trace showed allocated: a
slab that predates the trace may hold objects allocated before tracing began, so whether the free
emptied it is unknown; those frees are counted as `unknown_state` in the JSON, in both runs, and
read from the frames seen up to the free, never from the kernel's page free of that slab. Buddy
lists (fallback), after each kernel steal Kmem did not make at the same allocation for the same zone
and type, once Kmem's decision is recorded: an mm_page_alloc_extfrag says that 6.1's
__rmqueue_smallest had found the requested type's lists empty at every order from the request's up,
that __rmqueue_fallback took a block of fallback_order of the fallback type (moving the block, or every
free page of its pageblock when can_steal_fallback allows it, and claiming the pageblock as
change_ownership says), and the zone_locked events after it in the same refill say how many blocks
the allocation then took from there. Kmem's free blocks of that type from the request's order up move
to the fallback type's lists, a block of the fallback type of that order (else the nearest) is
stolen the same way, and as many blocks as the kernel's allocation took after the steal leave the
type's lists as stand-ins, held until the next such correction of that zone and type; only free lists
change, so Kmem's free page count moves by those stand-ins alone. A steal only Kmem made is not
corrected: the kernel's zone_locked at that allocation says its lists held a block of the order, not
how many pages, and Kmem's next steals come from its own consumption. zone is not aligned: its
aligned figures are those of a run whose lists and caches were aligned. **Free-running**: Kmem's
state evolves on its own; both runs replay the bulk allocator's pages (the frames the kernel's lists
held at their head, known from the same events). User pages are pages of Kmem tasks (the pressure
replay); their page tables are the kernel's own page-table frames (GFP_PGTABLE_USER), taken over
from the page path, so a fault does not allocate a second table on top of the kernel's.
"""

def i386_refill_text(h):
    """The i386 capture's free-running refills, phase by phase, with the drift classes that parted the lists."""
    fr = h.get("decisions_free_running", {}).get("pcp_refill")
    if not fr or fr.get("kernel_yes", 0) == 0:
        return ""
    refills = {p["phase"]: p["decisions_free_running"].get("pcp_refill") for p in h.get("decisions_by_phase", [])}
    drift = {p["phase"]: p.get("classes", {}) for p in h.get("pcp_drift") or []}

    def cls(phase, name):
        c = drift.get(phase, {}).get(name)
        return c["kmem_pages"] - c["kernel_pages"] if c else 0

    parts = []
    for phase, d in refills.items():
        if d and d["kernel_yes"]:
            parts.append(f"{phase} {d['both_yes']:,} of {d['kernel_yes']:,}")
    moved = []
    for phase in drift:
        slab, refill = cls(phase, "slab_page"), cls(phase, "refill")
        if slab or refill:
            moved.append(f"{phase}: slab {slab:+,}, refill {refill:+,}")
    drains = h.get("decisions", {}).get("pcp_drain", {}).get("kernel_yes", 0)
    return f"""- On the i386 capture free-running refills match {fr['both_yes']:,} of the kernel's {fr['kernel_yes']:,}
  (by phase, at the same allocation: {', '.join(parts)}). Its one CPU never brings a list back in step:
  the kernel drains {drains:,} times (no count reaches high), so no count is ever revealed or emptied on both
  sides, and a list a few pages apart stays so, each refill on one side coming some allocations before or
  after the other's. The pages that parted them, Kmem's less the kernel's by the drift table's classes
  ({'; '.join(moved)}): Kmem's slab layer takes other slab pages than the kernel's (new_slab
  free-running, above), and from then on each side refills at its own allocations.
"""


def gaps_text(b, h, h_folder):
    """The free-running gaps, with the figures they quote read from capture B's (b) and the i386 capture's (h)
    replays."""
    fr = b.get("decisions_free_running", {})
    phases = {p["phase"]: p for p in b.get("pcp_drift") or []}

    def revealed(name):
        p = phases.get(name)
        return f"{p['equal']:,} of {p['reveals']:,}" if p and p["reveals"] else "none"

    def near(name):
        p = phases.get(name)
        return f"{p['within_batch']:,} of {p['reveals']:,}" if p and p["reveals"] else "none"

    i386_fb = h.get("decisions_free_running", {}).get("fallback") or {"kmem_yes": 0, "both_yes": 0, "kernel_yes": 0}
    i386_al = h.get("decisions", {}).get("fallback") or {"both_yes": 0, "kernel_yes": 0}
    extra = [m for m in mismatches(h.get("decisions_free_running", {}), "fallback") if m["kmem"] and not m["kernel"]]
    i386_extra = (f", at trace {line_list(extra)} ({'; '.join(m['detail'].split('; ', 1)[-1] for m in extra)})"
                  if extra else "")
    i386_frames = table_frames(h_folder)
    # The extra steal explained below is the first in ZONE_NORMAL's unmovable lists (the phase of its blocks); any
    # other is listed as unexplained.
    normal = [m for m in extra if "Normal Unmovable" in m["detail"]]
    explained = normal[0]["line"] if normal else None
    others = [m for m in extra if m["line"] != explained]
    i386_phase = (f"""  The extra steal at line {explained:,} is the phase of ZONE_NORMAL's unmovable blocks: when the trace starts the kernel still
  holds the end of an order-10 block stolen before tracing (its refill at line 80,639 takes 0x43fd-0x43ff of
  block 0x4000-0x43ff, then steals the block at 0x4c00, for a slab page, which the comparison leaves to
  Kmem's slab layer), while Kmem's unmovable lists there are empty and its first slab page, at the trace's
  first lines, steals a block of its own; each side's block then runs out at its own line, the kernel's
  at 80,639 and Kmem's at the line above. The aligned run matches the kernel ({i386_al['both_yes']:,} of
  {i386_al['kernel_yes']:,}): the kernel's steal at line 80,639 corrects Kmem's Normal lists, which then last to the
  trace's end.""" if explained else "")
    i386_others = (f" The other{'s' if len(others) > 1 else ''} ({line_list(others)}) {'are' if len(others) > 1 else 'is'} not explained."
                   if others else "")
    i386_exited = (h.get("pressure") or {}).get("tasks_exited", 0)
    i386_refills = i386_refill_text(h)
    more = i386_fb["kmem_yes"] - i386_fb["both_yes"]
    i386_more = f"{more:,} steal{'' if more == 1 else 's'} the kernel did not make" if more else "no steal the kernel did not make"
    # A task's tables and its PGD are put to the user or the table class by the call that moves them (its first fault,
    # its exit), so the two are summed.
    task_classes = [c for k, c in phases.get("parallel", {}).get("classes", {}).items() if k in ("page_table", "user_page")]
    table_drift = (f"in the parallel phase the user and table classes together take "
                   f"{-sum(c['kmem_pages'] for c in task_classes):,} pages off Kmem's lists against "
                   f"{-sum(c['kernel_pages'] for c in task_classes):,} off the kernel's" if task_classes else "")
    boot = phases.get("boot", {})
    boot_classes = boot.get("classes", {})

    def boot_class(name):
        c = boot_classes.get(name)
        return c["kmem_pages"] - c["kernel_pages"] if c else 0

    slab = boot_class('slab_page')
    slab_boot = (f"in the boot phase the slab class is {slab:+,} page{'' if abs(slab) == 1 else 's'} (Kmem's slab pages less "
                 f"the kernel's)" if boot_classes else "the drift table shows the rest")
    boot_text = ""
    if boot.get("reveals"):
        boot_text = (f"In the boot phase Kmem's count stands {boot['diff'] / boot['reveals']:+.1f} pages from the "
                     f"kernel's on average at its {boot['reveals']:,} revealed counts ({boot['equal']:,} equal): the bulk "
                     f"class ({boot_class('bulk'):+,}) is mostly a bulk allocation of unknown size (a burst no page array "
                     f"announced), whose frames Kmem takes as the trace reveals them taken while the kernel's share is "
                     f"not counted; the kernel's boot pagesets (below, not modelled) refill one block at a time where "
                     f"Kmem's take a batch, so Kmem's lists start a batch's leftover apart; the refill "
                     f"({boot_class('refill'):+,}) and drain ({boot_class('drain'):+,}) classes are the consequence, and "
                     f"a one-sided free_high drain (the whole count) makes the mean.")
    drain = fr.get("pcp_drain")
    met = drain and drain["kernel_yes"] and drain["kmem_yes"] and drain["recall"] >= 0.85 and drain["precision"] >= 0.85
    goal_text = (f"The 85 % goal for free-running drains is {'met' if met else 'not met'} on capture B "
                 f"({rec(drain)} recall, {prec(drain)} precision)." if drain else "")
    return f"""## Remaining gaps, free-running

- Free-running pcp_refill and pcp_drain match only where the two lists are in step (capture B:
  pcp_refill {rec(fr["pcp_refill"])} recall / {prec(fr["pcp_refill"])} precision, pcp_drain
  {rec(fr["pcp_drain"])} / {prec(fr["pcp_drain"])}): a refill comes when one list is empty, a drain when
  the CPU's count reaches high, and one page more or less on either side moves every later one by the
  same amount, until lists drained empty on both sides bring the counts back in step (after
  drop_caches' drain_all_pages, {revealed('drop_caches')} revealed counts are equal; in the pipes phase
  {near('pipes')} are less than a batch apart, and {revealed('pipes')} equal). A few pages apart are enough for
  one side to drain at a free where the other does not, and then for only that side to drain its whole
  count at the next high-order free (free_high: a drain since the last allocation), where the other keeps
  hundreds of pages; both sides doing so brings them back in step. What moves them, by the
  drift table's classes: (1) slab pages: the kernel's caches already held slabs when tracing began
  ({b.get('pre_trace_slabs', 0):,} met on capture B: a slab the trace first shows an object allocated in, and never
  showed allocated), and served objects from them with no page taken, while Kmem's caches start empty.
  Free-running, Kmem's slab layer still decides when a cache needs a new slab, but as many of each cache's
  slabs as the kernel had from before tracing come straight off Kmem's buddy lists, never its per-CPU
  lists ({b.get('pre_trace_stand_ins', 0):,} such stand-ins), and once the kernel takes a new slab where Kmem served a
  stand-in's object, the kernel's slabs from before tracing had no object left: the objects the stand-ins
  still held free are taken as placeholders ({b.get('pre_trace_placeholders', 0):,}) until Kmem's cache takes a new
  slab too, so its next ones fall where the kernel's do. How many objects each of the kernel's slabs still
  had free is not in the trace, so one stand-in is a whole slab until then; {slab_boot}; (2) Kmem's tasks (the
  pressure replay): where the kernel frees a table frame that still maps pages in Kmem's task (6.1
  frees a task's tables in the same mmu_gather batch as its pages, tables first, and Kmem's task
  places its pages in other tables than the kernel's), Kmem moves the table's entries to a frame of
  its own ({b.get('page_tables_own_moved', 0):,} on capture B, of its {b.get('page_tables_own', 0):,} own tables), a spare frame that an
  earlier such table gave back when it went ({b.get('page_tables_own_frames', 0):,} frames were taken for them all, straight off the buddy lists){'; ' + table_drift if table_drift else ''}:
  a move that took a page off the lists and gave it back when the moved table went did so at other
  events than any of the kernel's, and the moves in flight set Kmem's count that many pages below the
  kernel's at the drains between; likewise a frame of the kernel's that Kmem's task gave up at its
  exit_mmap before the kernel freed it (tlb_finish_mmu's batch can come after) stays allocated until
  the kernel's free of it, so the lists gain it at the same event on both sides; (3) tasks'
  kernel stacks: a replayed task has none of its own, since the page path replays the kernel's (the
  bulk allocator's pages of its vmalloc'ed stack on x86-64, an order-1 page on x86-32); when Kmem's
  tasks took stacks of their own too, every task made while both stack caches were empty took four
  pages twice; (4) each side's refills and drains at other events,
  the consequence. An offset made at the trace's first refills (the boot pagesets, below, and the bulk
  allocations of unknown size) lasts until lists drain empty on both sides, so once the lists part, later
  decisions match only by chance; refills, which come only when a list runs empty, match well in few
  phases (the table by phase above). {boot_text} {goal_text}
- Aligned, the drained amount (nr_pcp_free: batch doubled per drain without an allocation between,
  clamped to high − batch; the whole count for a high-order free after one) is the kernel's where
  Kmem's pcp high is: the boot reserve (docs/trace-replay.md) makes it the kernel's on both captures.
- fallback, free-running: a steal depends on the buddy lists of every order and type, which no event
  reveals one by one; Kmem's free blocks are other frames than the kernel's, so its steals come at
  other allocations (the totals are close: see the consequence totals). On capture B the boot phase's
  order-0 unmovable steals (the trace ring buffer's pages, __rb_allocate_pages) come one order-10
  block (1,024 pages) apart on both sides, Kmem's a constant number of pages early: 93 pages of
  allocations of the type, the phase of the 1,024-page cycle at the trace's start, set before tracing
  began. The kernel's first refills take the last 37 frames of its unmovable block 0x8000-0x83ff
  (0x83db-0x83ff) and it steals the next block at trace line 214, so about 987 of that block's pages
  were taken before tracing, by allocations no event shows; Kmem's machine, replayed up to the same
  point, has used 31 pages of its first unmovable block (one order-0 refill of its own boot) and holds
  the other 993 free. The difference moves every later steal by the same amount; the stand-ins for the
  kernel's slabs from before tracing, which Kmem takes off its buddy lists at the trace's first lines, add
  to it. The aligned run
  removes exactly this (see the fallback line of each capture's counted gaps). The per-CPU allocator's
  first chunk does not add to it: as 6.1's pcpu_embed_first_chunk takes its units from memblock,
  Kmem claims them from the frames boot reserved (BootReservations), so they never pass the buddy
  lists. Not modelled: the boot pagesets (batch 1, high 0) that 6.1 uses until setup_per_cpu_pageset,
  after trace_init (capture B's first refills, one page each, are theirs). Tried, with the switch read
  from the end of setup_per_cpu_pageset's run of setup_zone_pageset percpu allocations, or from the
  first refill burst of two blocks (a boot pageset's batch is one) on a build whose call sites name
  none (the i386 capture's): on capture B free-running drains matched 319 of 375 instead of 325, and the
  aligned run's first steal of its own came at line 4,296, 93 allocations before the kernel's, where
  without them the blocks Kmem's first batch refills leave on lists the trace has not yet revealed
  happen to delay it; not kept until that steal is understood.
- On the i386 capture the free-running run makes {i386_more} ({i386_fb['kmem_yes']:,} against
  {i386_fb['kernel_yes']:,}, {i386_fb['both_yes']:,} on the same allocation){i386_extra}.
  Kmem's PTE tables are HIGHPTE tables, as the kernel's are (CONFIG_HIGHPTE: __userpte_alloc_gfp adds
  __GFP_HIGHMEM, so they come from HighMem first): the trace's {i386_frames['highpte']:,} such frames wait apart and
  are taken for Kmem's PTE tables, its {i386_frames['plain']:,} order-0 GFP_PGTABLE_USER pages (PAE's PMD tables,
  three for each of the {i386_frames['pgd_cache']:,} pgd_alloc allocations, whose PGD comes from the 32-byte pgd_cache) for
  the levels above. Of Kmem's {h.get('page_tables_own', 0):,} own tables, {h.get('page_tables_own_moved', 0):,} are moves: where the kernel frees a table
  frame while Kmem's table there still maps pages (6.1 frees a task's tables in the same mmu_gather batch
  as its pages, tables first), the entries move to a frame of Kmem's own, from ZONE_NORMAL's unmovable
  lists above the PTE level; {h.get('page_tables_own', 0) - h.get('page_tables_own_moved', 0):,} were allocated at a fault no frame waited for
  ({h.get('page_tables_own_frames', 0):,} frames in all, the rest spares). This capture's build names exit_mmap's frees
  vm_area_free and mt_destroy_walk, as munmap's are named (the x86-64 build names them exit_mmap), so Kmem's tasks
  end where the kernel has freed the last of the table frames they took ({i386_exited:,} tasks), which on PAE is
  mmdrop's pgd_free of the PMD tables, a little after exit_mmap.
{i386_phase}{i386_others}
{i386_refills}- Page frees the replay cannot mirror on capture B: {b.get('untracked_page_frees', 0):,} frees of frames never seen
  allocated (frames taken with no event: the targets the kernel's compaction isolated in the compact phase,
  freed in cleanup; the free-running run frees a stand-in for each, a page taken off Kmem's buddy lists) and {b.get('unattributed_drains', 0):,} drains after no page free (a
  list free whose mm_page_free an interrupt's event committed first: its drains have no free of their
  own left to belong to).
"""

if __name__ == "__main__":
    main(sys.argv[1:])
