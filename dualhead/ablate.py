"""The paper's ablation on the embedded data (YOLOv10 Table 3 and the metric study):
o2m only (evaluated with NMS), o2o only, dual (o2o evaluated without NMS), and dual with an
inconsistent o2o metric (alpha 0.5, beta 2 against the o2m head's 0.5, 6)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from dualhead.train import TrainConfig, train

RUNS = {
    "o2m only (NMS)": dict(mode="o2m"),
    "o2o only (no NMS)": dict(mode="o2o"),
    "dual, consistent (no NMS)": dict(mode="dual"),
    "dual, inconsistent a=0.5 b=2 (no NMS)": dict(mode="dual", o2o_alpha=0.5, o2o_beta=2.0),
}


def ablate(base: TrainConfig, out="runs/ablate") -> list[dict]:
    out = Path(out)
    rows = []
    for i, (name, kw) in enumerate(RUNS.items()):
        cfg = replace(base, out=str(out / f"run{i}_{kw['mode']}"), resume=False, **kw)
        m = train(cfg)
        rows.append({"run": name, "map": m.get("map"), "map50": m.get("map50"), "top1": m.get("top1"),
                     "top5": m.get("top5"), "gap": m.get("gap"), "map_o2m_nms": m.get("map_o2m_nms"),
                     "epochs": m.get("epoch"), "time_s": m.get("time_s")})
    table = format_table(rows)
    print(table)
    (out / "ablation.md").write_text(table + "\n")
    (out / "ablation.json").write_text(json.dumps(rows, indent=1))
    return rows


def format_table(rows) -> str:
    def f(v):
        return "—" if v is None else f"{v:.3f}"

    lines = ["| run | mAP@.5:.95 | mAP@.5 | o2o top-1 | o2o top-5 | gap | o2m head + NMS mAP | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {f(r['map'])} | {f(r['map50'])} | {f(r['top1'])} | {f(r['top5'])} | "
                     f"{f(r['gap'])} | {f(r['map_o2m_nms'])} | {r['time_s']:.0f} |")
    return "\n".join(lines)
