#!/usr/bin/env python3
"""bench/cpu_conv_table.py — the README's performance table from bench/results/cpu_conv.json.

    python3 bench/cpu_conv_table.py bench/results/cpu_conv.json [native.json]

Prints a Markdown table: per case and pass, calograd and oneDNN milliseconds, calograd's
GFLOP/s and % of the measured AVX2 FMA peak, and the oneDNN/calograd time ratio (> 1: calograd
is faster). With a second file (a run with --onednn-isa native), adds oneDNN's native-ISA time.
"""
import json
import sys


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    r = json.load(open(sys.argv[1]))
    nat = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else None
    natc = {c["name"]: c for c in nat["cases"]} if nat else {}
    print(f"{r['machine']}, {r['threads']} threads, batch {r['batch']}, median of {r['reps']}; "
          f"measured AVX2 FMA peak {r['fma_peak_gflops']:.0f} GFLOP/s; oneDNN {r['onednn_version']} "
          f"limited to {r['onednn_max_isa']}; 1-min load {r['load_avg_1min_at_start']:.2f}; {r['date']}.")
    print()
    head = "| case | pass | calograd ms | oneDNN ms | calograd GFLOP/s | % peak | ratio |"
    line = "|---|---|---:|---:|---:|---:|---:|"
    if nat:
        head += f" oneDNN {nat['onednn_max_isa']} ms |"
        line += "---:|"
    print(head)
    print(line)
    for c in r["cases"]:
        for i, p in enumerate(["fwd", "bwd_d", "bwd_w", "total"]):
            d = c[p]
            name = f"{c['name']}" if i == 0 else ""
            if p == "total":
                row = f"| | **total** | **{d['calograd_ms']:.2f}** | **{d['onednn_ms']:.2f}** | | | **{d['ratio']:.2f}** |"
            else:
                row = (f"| {name} | {p} | {d['calograd_ms']:.2f} | {d['onednn_ms']:.2f} | {d['calograd_gflops']:.0f} "
                       f"| {d['calograd_pct_peak']:.0f}% | {d['ratio']:.2f} |")
            if nat:
                n = natc.get(c["name"])
                row += f" {n[p]['onednn_ms']:.2f} |" if n else " |"
            print(row)
    print()
    print(f"Geometric mean of the total-time ratios: **{r['geomean_ratio']:.2f}**"
          + (f" (against oneDNN {nat['onednn_max_isa']}: {nat['geomean_ratio']:.2f})" if nat else "") + ".")
    pp = r.get("postprocessor_forward")
    if pp:
        print(f"BIB-AE post-processor forward (batch {pp['batch']}): {pp['ms_per_batch']:.1f} ms per batch, "
              f"**{pp['ms_per_shower']:.2f} ms per shower**.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
