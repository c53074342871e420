"""The GPU script's closing summary: every `dualhead bench` JSON in a folder as a markdown table
(and the per-kernel GPU times where the run had --kernels), appended to summary.md.

    python benchmarks/gpu_summary.py OUT_DIR
"""

import glob
import json
import os
import sys


def main(out_dir: str) -> None:
    for path in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
        try:
            with open(path) as f:
                data = json.load(f)
            meta, rows = data["meta"], data["rows"]
        except (OSError, ValueError, KeyError):
            continue
        print(
            f"\n## {os.path.basename(path)}\n\n{meta['date']}, {meta['machine']}, torch {meta['torch']}: "
            f"`{meta['command']}`\n"
        )
        print("| workload | mode | impl | B | M | candidates | median ms | x ultralytics | peak MB | note |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            t = f"{r['median_s'] * 1e3:.3f}" if r.get("median_s") else "-"
            sp = r.get("speedup_vs_ultralytics")
            mem = r.get("peak_extra_mb")
            print(
                f"| {r['workload']} | {r['mode']} | {r['impl']} | {r['B']} | {r['M']} | {r['candidates']} | {t} | "
                f"{f'{sp:.1f}x' if sp else '-'} | {f'{mem:.0f}' if mem is not None else '-'} | "
                f"{(r.get('note') or '')[:80]} |"
            )
        for r in rows:
            if r.get("kernels"):
                print(
                    f"\nGPU time per call, {r['workload']} {r['mode']} ({sum(r['kernels'].values()):.1f} us in all):\n"
                )
                print("| us | kernel |\n|---|---|")
                for k, us in r["kernels"].items():
                    print(f"| {us:.1f} | `{k[:100]}` |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/gpu_results")
