"""Formats the pressure part of docs/fidelity.md from `kmem replay --json` of a pressure capture
(called by scripts/fidelity.sh, its output appended after the per-capture sections).

Arguments: the JSON file and the capture's title. Every figure comes from the JSON: the
pressure decision kinds (aligned and free-running), the OOM victims, the timeline per phase and
the /proc/vmstat counters after each phase, the kernel's beside Kmem's, with whether each is
within the goal (10 %, or ±2 for counts under 20)."""
import json
import re
import sys

KINDS = ["kswapd_wake", "direct_reclaim", "compaction", "oom_victim"]
PAGE_KINDS = ["pcp_refill", "pcp_drain", "fallback"]
ROWS = ["kswapd wakeups", "kswapd runs", "direct reclaims", "direct reclaimed pages", "swap-out pages",
        "direct compactions", "OOM kills", "free pages at end", "kswapd lower-zone runs", "kswapd lower-zone scans"]
# Counters shown to explain others (pages reclaim walked past for a lower zone limit, counted as scanned by pgscan_*),
# not counted against the goal.
CAUSES = ("pgskip_",)


def pct(x):
    return f"{100 * x:.1f} %"


def row(kind, d):
    if d is None or d["compared"] == 0:
        return f"| {kind} | 0 | – | – | – | – | – | – |"
    rec = pct(d["recall"]) if d["kernel_yes"] else "–"
    prec = pct(d["precision"]) if d["kmem_yes"] else "–"
    amount = f"{d['amount_equal']}/{d['amount_compared']}" if d["amount_compared"] else "–"
    return (f"| {kind} | {d['compared']:,} | {pct(d['ratio'])} | {rec} | {prec} "
            f"| {d['kernel_yes']:,} | {d['kmem_yes']:,} | {d['both_yes']:,} / {amount} |")


def within(kernel, kmem):
    if kernel is None:
        return "–"
    if kernel < 20:
        return "yes" if abs(kmem - kernel) <= 2 else "no"
    return "yes" if abs(kmem - kernel) <= 0.1 * kernel else "no"


def section(path, title):
    j = json.load(open(path))
    p = j.get("pressure")
    out = [f"## Memory pressure: {title}", ""]
    if p is None:
        return "\n".join(out + ["The replay saw no pressure.", ""])
    out += [f"{p['task_pages']:,} user pages replayed as pages of Kmem tasks; {p['reclaim_frees']:,} of them freed by "
            f"the kernel's reclaim and left to Kmem's; {p['swap_ins']:,} swap-ins; {p['untraced_pages']:,} pages held "
            f"for memory used before tracing began (set where the capture's vmstat reveals the kernel's free pages). "
            f"Kmem's watermarks (all zones): min {p['watermarks']['min']:,}, low {p['watermarks']['low']:,}, "
            f"high {p['watermarks']['high']:,} pages.", "",
            f"OOM victim: kernel {', '.join(p['kernel_victims']) or 'none'}; Kmem {', '.join(p['kmem_victims']) or 'none'}.", "",
            "| kind | compared | ratio | recall | precision | kernel yes | Kmem yes | both yes / same amount |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, key in (("aligned", "decisions"), ("free-running", "decisions_free_running")):
        for k in KINDS:
            out.append(row(f"{k} ({mode})", j.get(key, {}).get(k)))
    out += ["", "The page allocator's kinds on this capture (per-CPU lists aligned before user pages' frees too, with "
            "the kernel's ZONE_RECLAIM_ACTIVE: see memory-pressure.md):", "",
            "| kind | compared | ratio | recall | precision | kernel yes | Kmem yes | both yes / same amount |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, key in (("aligned", "decisions"), ("free-running", "decisions_free_running")):
        for k in PAGE_KINDS:
            out.append(row(f"{k} ({mode})", j.get(key, {}).get(k)))
    out += phase_table(j)
    out += gaps(j)
    out += gaps_free_running(j)
    out += ["", "### Pressure timeline per phase (kernel / Kmem, free-running)", ""]
    phases = [ph for ph in p["phases"] if ph["phase"] not in ("boot", "snapshot")]
    out.append("| | " + " | ".join(ph["phase"] for ph in phases) + " |")
    out.append("|---|" + "---:|" * len(phases))
    for r in ROWS:
        key = r.replace(" ", "_").replace("-", "_")
        cells = [f"{ph['kernel'].get(key, '–')} / {ph['kmem'].get(key, '–')}" for ph in phases]
        out.append(f"| {r} | " + " | ".join(cells) + " |")
    out += ["", "### /proc/vmstat after each phase (kernel / Kmem, free-running; goal: within 10 %, ±2 under 20)", ""]
    names = list(dict.fromkeys(c["name"] for c in p["vmstat"]))
    vphases = list(dict.fromkeys(c["phase"] for c in p["vmstat"]))
    out.append("| counter | " + " | ".join(vphases) + " |")
    out.append("|---|" + "---:|" * len(vphases))
    met = total = 0
    for n in names:
        cells = []
        for ph in vphases:
            c = next((c for c in p["vmstat"] if c["phase"] == ph and c["name"] == n), None)
            if c is None:
                cells.append("")
                continue
            w = within(c["kernel"], c["kmem"])
            if ph == "final" and n != "nr_free_pages" and not n.startswith(CAUSES) and w != "–":
                total += 1
                met += w == "yes"
            k = "–" if c["kernel"] is None else f"{c['kernel']:,}"
            cells.append(f"{k} / {c['kmem']:,}" + (" ✓" if w == "yes" and not n.startswith(CAUSES) else ""))
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    out += ["", f"Final event counters within the goal: {met} of {total} (✓ marks each counter within it).", ""]
    return "\n".join(out)


# Kmem's state before the fault: the exact free pages, the NR_FREE_PAGES counter the watermark checks read, the marks.
STATE = re.compile(r"Kmem free (-?\d+) \(counter (-?\d+); min (\d+), low (\d+), boost (\d+)\), kswapd (awake|asleep)")
LOWER = re.compile(r"lower zones' margin over min (-?\d+), over low (-?\d+)")
# Margins of a lower zone's counter over its watermark and lowmem reserve, in pages: the CPUs' vm_stat_diff of a small
# zone holds a few pages each (DMA's stat_threshold on the captures is 4, 3 under pressure), so a margin within NEAR
# turns on pages the trace's fold times (vmstat_update, taken at whole seconds) may have placed otherwise.
NEAR, FAR = 8, 64


def phase_table(j):
    """The pressure kinds per phase, aligned and free-running (phases where either side said yes)."""
    out = ["", "### By phase", "",
           "| phase | kind | aligned recall | aligned precision | kernel / Kmem yes (aligned) | free-running recall | free-running precision |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for ph in j.get("decisions_by_phase", []):
        for k in KINDS[:3]:
            a = ph.get("decisions", {}).get(k)
            f = ph.get("decisions_free_running", {}).get(k)
            if a is None or a["kernel_yes"] + a["kmem_yes"] + (f or {}).get("kmem_yes", 0) == 0:
                continue
            fr = (pct(f["recall"]) if f and f["kernel_yes"] else "–", pct(f["precision"]) if f and f["kmem_yes"] else "–")
            out.append(f"| {ph['phase']} | {k} | {pct(a['recall']) if a['kernel_yes'] else '–'} "
                       f"| {pct(a['precision']) if a['kmem_yes'] else '–'} | {a['kernel_yes']:,} / {a['kmem_yes']:,} "
                       f"| {fr[0]} | {fr[1]} |")
    return out


def lower(c, mark):
    """The Kmem-only entries at or below the preferred zone's watermark, by the lower zones' best margin over theirs
    (with the lowmem reserve): the kernel took its page there if that zone passed."""
    n = c["lower_near"] + c["lower_drift"] + c["lower_far"]
    if n == 0:
        return ""
    return (f" Of the {n:,} Kmem-only ones at or below the {mark} watermark, a lower zone's counter was within {NEAR} pages of "
            f"passing its own {mark} watermark and lowmem reserve in {c['lower_near']:,}, within {FAR} in {c['lower_drift']:,}, "
            f"further in {c['lower_far']:,}.")


def kmem_state(m, kind, mark):
    """Kmem's state before a disagreement's fault, from its detail: "awake" (kswapd_wake only), "above" or "below" the
    watermark (the NR_FREE_PAGES counter against it), with the counter, the mark and whether kswapd was awake; None
    when the detail names no state."""
    st = STATE.search(m["detail"])
    if st is None:
        return None
    free, wm, awake = int(st.group(2)), int(st.group(3 if mark == "min" else 4)), st.group(6) == "awake"
    return ("awake" if awake and kind == "kswapd_wake" else "above" if free > wm else "below"), free, wm, awake


def gaps(j):
    """The aligned disagreements of kswapd_wake and direct_reclaim, counted by Kmem's state before the fault (the
    mismatch details name it; they are listed when the replay ran with --mismatches): the preferred zone's
    NR_FREE_PAGES counter (zone_page_state, which the watermark checks read) against the watermark."""
    out = ["", "### Remaining gaps, counted (aligned)", ""]
    for kind, mark in (("kswapd_wake", "low"), ("direct_reclaim", "min")):
        ms = j.get("decisions", {}).get(kind, {}).get("mismatches") or []
        if not ms:
            continue
        c = {"k_awake": 0, "k_above": 0, "k_below": 0, "m_asleep_below": 0, "m_above": 0, "m_awake": 0, "paired": 0,
             "lower_near": 0, "lower_drift": 0, "lower_far": 0}
        for i, m in enumerate(ms):
            state = kmem_state(m, kind, mark)
            if state is None:
                continue
            where, free, wm, awake = state
            if m["kernel"]:
                c["k_" + where] += 1
            else:
                c["m_asleep_below" if where == "below" else "m_" + where] += 1
                lo = LOWER.search(m["detail"])
                if lo is not None and free <= wm and not (awake and kind == "kswapd_wake"):
                    margin = int(lo.group(1 if mark == "min" else 2))
                    c["lower_near" if -NEAR <= margin else "lower_drift" if -FAR <= margin else "lower_far"] += 1
                nxt = ms[i + 1] if i + 1 < len(ms) else None
                if nxt is not None and nxt["kernel"] and not nxt["kmem"] and nxt["line"] - m["line"] < 5000:
                    c["paired"] += 1
        k_only = c["k_awake"] + c["k_above"] + c["k_below"]
        m_only = c["m_awake"] + c["m_above"] + c["m_asleep_below"]
        if kind == "kswapd_wake":
            out.append(f"- kswapd_wake: {k_only:,} kernel-only wakeups: {c['k_awake']:,} found Kmem's kswapd awake (woken "
                       f"by Kmem earlier, or not yet balanced), {c['k_above']:,} found Kmem's counter above its low "
                       f"watermark, {c['k_below']:,} below it with kswapd asleep (the allocation passed the fast path in "
                       f"another zone); {m_only:,} Kmem-only: {c['m_asleep_below']:,} at or below the low watermark with "
                       f"kswapd asleep, {c['m_above']:,} above it (a steal of Kmem's own set ZONE_BOOSTED_WATERMARK), "
                       f"{c['m_awake']:,} other. {c['paired']:,} Kmem-only wakeups are followed by a kernel-only one "
                       f"within 5,000 lines: the same wakeup a few allocations apart, the free pages a few apart." + lower(c, "low"))
        else:
            out.append(f"- direct_reclaim: {k_only:,} kernel-only: {c['k_above']:,} found Kmem's counter above its "
                       f"min watermark, {c['k_below']:,} at or below it (Kmem's allocation took a page in another zone); "
                       f"{m_only:,} Kmem-only: {c['m_asleep_below']:,} at or below the min watermark, {c['m_above']:,} "
                       f"above it (Kmem's own steal or fault took more). {c['paired']:,} are followed by a kernel-only "
                       f"one within 5,000 lines." + lower(c, "min"))
    return out if len(out) > 3 else []


def gaps_free_running(j):
    """The free-running disagreements of kswapd_wake and direct_reclaim, counted by Kmem's state before the fault, and
    how far (in lines) each Kmem-only one lies from the nearest kernel-only one, against how far apart the kernel-only
    ones lie from each other."""
    out = ["", "### Remaining gaps, counted (free-running)", ""]
    for kind, mark in (("kswapd_wake", "low"), ("direct_reclaim", "min")):
        ms = j.get("decisions_free_running", {}).get(kind, {}).get("mismatches") or []
        kernel_lines = [m["line"] for m in ms if m["kernel"] and not m["kmem"]]
        kmem_lines = [m["line"] for m in ms if m["kmem"] and not m["kernel"]]
        if not kernel_lines or not kmem_lines:
            continue
        c = {"awake": 0, "above": 0, "below": 0}
        for m in ms:
            state = kmem_state(m, kind, mark) if m["kernel"] and not m["kmem"] else None
            if state is not None:
                c[state[0]] += 1
        awake, above, below = c["awake"], c["above"], c["below"]
        nearest = median([min(abs(line - k) for k in kernel_lines) for line in kmem_lines])
        spacing = median([b - a for a, b in zip(kernel_lines, kernel_lines[1:])]) if len(kernel_lines) > 1 else None
        state = (f"{awake:,} found Kmem's kswapd awake (its work under way, or waiting for the kernel's pace), "
                 if kind == "kswapd_wake" else "")
        apart = f", where consecutive kernel-only ones lie a median of {spacing:,} lines apart" if spacing is not None else ""
        passed = ("the allocation passed the fast path in another zone" if kind == "kswapd_wake"
                  else "Kmem's allocation took a page in another zone")
        out.append(f"- {kind}: {len(kernel_lines):,} kernel-only: {state}{above:,} found Kmem's counter above its {mark} "
                   f"watermark (Kmem's node less pressed at that allocation), {below:,} at or below it ({passed}). "
                   f"{len(kmem_lines):,} Kmem-only, a median of {nearest:,} lines from the nearest kernel-only one{apart}.")
    return out if len(out) > 3 else []


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if v else 0


if __name__ == "__main__":
    print(section(sys.argv[1], sys.argv[2]))
