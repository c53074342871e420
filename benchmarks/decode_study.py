"""The o2o head's NMS-free decoding, two ways, on the same trained weights:
multi-label top-k (ultralytics v10: an anchor may give several classes) against one class per
anchor. Evaluated exactly as the trainer evaluates (EMA weights of last.pt, the run's validation
set, COCOeval), so the 'multi-label' column reproduces each run's logged o2o mAP.

    python benchmarks/decode_study.py RUN_DIR... [--json OUT]

RUN_DIR: a `dualhead train` output folder (holding last.pt); runs are grouped by their parent
folder's parent (e.g. runs/sweep_o2o_lr5/dual/seed0 -> runs/sweep_o2o_lr5) for mean and std.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch


def study(run: Path) -> dict:
    from dualhead.detector.data import DetectionSet, build_dataset, collate
    from dualhead.detector.evaluate import coco_ground_truth, evaluate
    from dualhead.detector.train.checkpoint import load_checkpoint, load_model

    cfg = load_checkpoint(run / "last.pt")["train_config"]
    model, _ = load_model(run / "last.pt")
    val = build_dataset(cfg["data"], "val", cfg["imgsz"], cfg["val_len"])
    loader = torch.utils.data.DataLoader(DetectionSet(val), 32, collate_fn=collate, num_workers=0)
    gt = coco_ground_truth(val)
    out = {}
    for name, one in (("multi_label", False), ("one_class", True)):
        ev = evaluate(
            model, loader, gt, torch.device("cpu"), branches=("o2o",), max_det=cfg["eval_max_det"], one_class=one
        )["o2o"]
        out[name] = {k: ev[k] for k in ("map", "map50", "map_nms", "fp_dup", "fp_cls", "prec", "rec")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = {}
    for run in args.runs:
        rows[str(run)] = r = study(run)
        print(
            f"{run}: o2o mAP multi-label {r['multi_label']['map']:.4f}, one class {r['one_class']['map']:.4f}",
            flush=True,
        )
    groups: dict[str, list[dict]] = {}
    for run, r in rows.items():
        groups.setdefault(str(Path(run).parent.parent), []).append(r)
    print(
        "\n| runs | seeds | o2o mAP multi-label | one class per anchor | difference | FP cls share @0.25 (multi / one) |"
    )
    print("|---|---|---|---|---|---|")
    for g, rs in groups.items():
        ml = [r["multi_label"]["map"] for r in rs]
        oc = [r["one_class"]["map"] for r in rs]
        d = [b - a for a, b in zip(ml, oc)]
        sd = lambda x: statistics.stdev(x) if len(x) > 1 else 0.0
        fc = (
            statistics.mean(r["multi_label"]["fp_cls"] for r in rs),
            statistics.mean(r["one_class"]["fp_cls"] for r in rs),
        )
        print(
            f"| {g} | {len(rs)} | {statistics.mean(ml):.3f} ± {sd(ml):.3f} | {statistics.mean(oc):.3f} ± {sd(oc):.3f} "
            f"| {statistics.mean(d):+.4f} ± {sd(d):.4f} | {fc[0]:.0%} / {fc[1]:.0%} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
