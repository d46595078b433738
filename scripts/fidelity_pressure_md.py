"""Formats the pressure part of docs/fidelity.md from `kmem replay --json` of a pressure capture
(called by scripts/fidelity.sh, its output appended after the per-capture sections).

Arguments: the JSON file and the capture's title. Every figure comes from the JSON: the
pressure decision kinds (aligned and free-running), the OOM victims, the timeline per phase and
the /proc/vmstat counters after each phase, the kernel's beside Kmem's, with whether each is
within the goal (10 %, or ±2 for counts under 20)."""
import json
import sys

KINDS = ["kswapd_wake", "direct_reclaim", "compaction", "oom_victim"]
ROWS = ["kswapd wakeups", "kswapd runs", "direct reclaims", "direct reclaimed pages", "swap-out pages",
        "direct compactions", "OOM kills", "free pages at end"]


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
            if ph == "final" and n != "nr_free_pages" and w != "–":
                total += 1
                met += w == "yes"
            k = "–" if c["kernel"] is None else f"{c['kernel']:,}"
            cells.append(f"{k} / {c['kmem']:,}" + (" ✓" if w == "yes" else ""))
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    out += ["", f"Final event counters within the goal: {met} of {total} (✓ marks each counter within it).", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(section(sys.argv[1], sys.argv[2]))
