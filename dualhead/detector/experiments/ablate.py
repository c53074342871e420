"""The paper's ablation on the embedded data (YOLOv10 Table 3 and the metric study), over seeds:
o2m only (evaluated with NMS), o2o only, dual (o2o evaluated without NMS), and dual with an
inconsistent o2o metric (alpha 0.5, beta 2 against the o2m head's 0.5, 6); optionally
ultralytics' own YOLOv10n / YOLOv8n trained on the same images (dualhead.detector.experiments.ultralytics_anchor)
as an outside anchor, evaluated by the same pycocotools code.

Every (configuration, seed) is its own process, `jobs` at a time (on CPU each gets cores / jobs
threads; on a GPU several share it), logging to <out>/<config>/seed<S>/train.log. A finished run
is not trained again: re-running the same command after an interruption resumes the unfinished
runs (dualhead runs from their last.pt) and re-reads the finished ones. The table gives mean and
sample standard deviation over the seeds of the last epoch's metrics; ablation.json holds every
seed's row too; ablation.png the per-epoch curves (mean and range over seeds) of mAP and of the
false-positive diagnosis.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from dualhead.detector.experiments.ultralytics_anchor import require_ultralytics
from dualhead.detector.train import TrainConfig
from dualhead.detector.train.checkpoint import ensure_writable
from dualhead.detector.train.plots import plot_ablation, read_csv

CONFIGS = {
    "o2m": ("o2m only (NMS)", dict(mode="o2m")),
    "o2o": ("o2o only (no NMS)", dict(mode="o2o")),
    "dual": ("dual, consistent (no NMS)", dict(mode="dual")),
    "inconsistent": ("dual, inconsistent a=0.5 b=2 (no NMS)", dict(mode="dual", o2o_alpha=0.5, o2o_beta=2.0)),
}
ANCHORS = {
    "yolov10n": "ultralytics YOLOv10n (own recipe, NMS-free)",
    "yolov8n": "ultralytics YOLOv8n (own recipe, NMS)",
}
# the columns summarised over seeds (last epoch of each run; absent ones are skipped)
METRICS = (
    "map",
    "map50",
    "map_o2m_nms",
    "map_o2o_nms",
    "top1",
    "gap",
    "fp_dup",
    "fp_cls",
    "fp_loc",
    "fp_bkg",
    "prec",
    "rec",
    "time_s",
)


def parse_list(text: str, allowed, option: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad:
        raise ValueError(f"{option}: unknown {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}")
    return items


def plan(base: TrainConfig, out: Path, configs, seeds: int, anchors=()) -> list[dict]:
    """The runs: one dict per (configuration or anchor, seed) with its folder and what it runs."""
    runs = []
    for s in range(seeds):
        seed = base.seed + s
        for key in configs:
            cfg = replace(base, seed=seed, out=str(out / key / f"seed{seed}"), resume=False, **CONFIGS[key][1])
            runs.append(
                dict(
                    key=key, name=CONFIGS[key][0], seed=seed, dir=cfg.out, kind="dualhead", spec=asdict(cfg.validate())
                )
            )
        for key in anchors:
            d = out / key / f"seed{seed}"
            runs.append(
                dict(
                    key=key,
                    name=ANCHORS[key],
                    seed=seed,
                    dir=str(d),
                    kind="ultralytics",
                    spec=dict(
                        model=key,
                        seed=seed,
                        out=str(d),
                        data=base.data,
                        imgsz=base.imgsz,
                        epochs=base.epochs,
                        batch=base.batch,
                        workers=base.workers,
                        device=base.device,
                        train_len=base.train_len,
                        val_len=base.val_len,
                        eval_max_det=base.eval_max_det,
                        export_dir=str(out / "data_yolo"),
                    ),
                )
            )
    return runs


def last_row(run_dir) -> dict | None:
    """The last results.csv row of a run, numbers as floats (None if the run has none)."""
    p = Path(run_dir) / "results.csv"
    if not p.is_file():
        return None
    cols = read_csv(p)
    if not cols or not cols.get("epoch"):
        return None
    return {k: v[-1] for k, v in cols.items()}


def finished(run: dict) -> bool:
    row = last_row(run["dir"])
    return row is not None and int(row["epoch"]) >= run["spec"]["epochs"]


def _command(run: dict) -> list[str]:
    Path(run["dir"]).mkdir(parents=True, exist_ok=True)
    spec = dict(run["spec"])
    if run["kind"] == "dualhead":
        spec["resume"] = (Path(run["dir"]) / "last.pt").is_file()
        module = "dualhead.detector.experiments.ablate"
    else:
        module = "dualhead.detector.experiments.ultralytics_anchor"
    path = Path(run["dir"]) / "run.json"
    path.write_text(json.dumps(spec, indent=1))
    return [sys.executable, "-m", module, str(path)]


def default_jobs(device: str) -> int:
    if device != "cpu" and torch.cuda.is_available():
        return 4  # small models: one process leaves a GPU mostly idle, several keep it busy
    return max(1, (os.cpu_count() or 1) // 2)


def run_all(runs: list[dict], jobs: int, log=print) -> list[dict]:
    """Runs the unfinished ones, `jobs` processes at a time; returns the runs that failed."""
    todo = [r for r in runs if not finished(r)]
    for r in runs:
        if r not in todo:
            log(f"  done already: {r['key']} seed {r['seed']} ({r['dir']})")
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    active, failed = [], []
    try:
        while todo or active:
            while todo and len(active) < jobs:
                r = todo.pop(0)
                cmd = _command(r)  # makes the run folder
                logf = open(Path(r["dir"]) / "train.log", "a")
                p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
                active.append((p, r, logf, time.time()))
                log(f"  start {r['key']} seed {r['seed']} -> {r['dir']}/train.log")
            time.sleep(1.0)
            for item in list(active):
                p, r, logf, t0 = item
                if p.poll() is None:
                    continue
                active.remove(item)
                logf.close()
                row = last_row(r["dir"]) or {}
                if p.returncode != 0 or not finished(r):
                    failed.append(r)
                    tail = (Path(r["dir"]) / "train.log").read_text(errors="replace").strip().splitlines()[-3:]
                    log(f"  FAILED {r['key']} seed {r['seed']} (exit {p.returncode}): {' | '.join(tail)}")
                else:
                    log(
                        f"  done {r['key']} seed {r['seed']} in {time.time() - t0:.0f} s: mAP {row.get('map', math.nan):.3f}"
                    )
    finally:
        for p, _, logf, _ in active:  # Ctrl-C or an error: no orphaned trainings
            p.terminate()
            p.wait()
            logf.close()
    return failed


def mean_std(values) -> tuple[float, float | None]:
    v = [x for x in values if x is not None and x == x]
    if not v:
        return math.nan, None
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def summarise(runs: list[dict]) -> list[dict]:
    """One row per configuration: {'key', 'name', 'n', metric: [mean, std]} over its finished runs
    (a run still training, or one that failed, is not averaged in)."""
    rows = []
    for key in dict.fromkeys(r["key"] for r in runs):
        got = [last_row(r["dir"]) for r in runs if r["key"] == key and finished(r)]
        row = {"key": key, "name": next(r["name"] for r in runs if r["key"] == key), "n": len(got)}
        for m in METRICS:
            if any(m in g for g in got):
                row[m] = list(mean_std([g.get(m) for g in got]))
        rows.append(row)
    return rows


def format_table(summary: list[dict]) -> str:
    def f(row, m, digits=3):
        if m not in row or row[m][0] != row[m][0]:
            return "—"
        mean, std = row[m]
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")

    lines = [
        "| run | seeds | mAP@.5:.95 | mAP@.5 | o2m head + NMS | o2o head + NMS | o2o top-1 | "
        "FP dup / cls / loc / bkg @0.25 | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        fp = " / ".join(f"{r[k][0]:.0%}" if k in r else "—" for k in ("fp_dup", "fp_cls", "fp_loc", "fp_bkg"))
        t = f"{r['time_s'][0]:.0f}" if "time_s" in r else "—"
        lines.append(
            f"| {r['name']} | {r['n']} | {f(r, 'map')} | {f(r, 'map50')} | {f(r, 'map_o2m_nms')} | "
            f"{f(r, 'map_o2o_nms')} | {f(r, 'top1', 2)} | {fp} | {t} |"
        )
    return "\n".join(lines)


def ablate(
    base: TrainConfig,
    out="runs/ablate",
    configs=tuple(CONFIGS),
    seeds: int = 1,
    jobs: int = 0,
    anchors=(),
    train: bool = True,
) -> list[dict]:
    """Trains the unfinished runs (train=False: none, the table of what has finished so far) and
    writes ablation.md / ablation.json; returns the summary rows."""
    if not (isinstance(seeds, int) and seeds >= 1):
        raise ValueError(f"--seeds must be an int >= 1, got {seeds!r}")
    if not (isinstance(jobs, int) and jobs >= 0):
        raise ValueError(f"--jobs must be an int >= 0 (0: automatic), got {jobs!r}")
    if anchors and train:
        require_ultralytics()
    out = Path(out)

    ensure_writable(out, "--ablate-out")
    runs = plan(base, out, configs, seeds, anchors)
    jobs = jobs or default_jobs(base.device)
    what = ", ".join(list(configs) + list(anchors))
    print(
        f"ablation: {len(runs)} runs{'' if train else ' (report only: training none)'} ({what} x {seeds} seed(s)), "
        f"{jobs} at a time -> {out}"
    )
    failed = run_all(runs, jobs) if train else []
    summary = summarise(runs)
    per_seed = [
        dict(
            key=r["key"],
            name=r["name"],
            seed=r["seed"],
            dir=r["dir"],
            finished=finished(r),
            **(last_row(r["dir"]) or {}),
        )
        for r in runs
    ]
    table = format_table(summary)
    print(table)
    (out / "ablation.md").write_text(table + "\n")
    (out / "ablation.json").write_text(json.dumps({"summary": summary, "runs": per_seed}, indent=1))

    curves = {}
    for r in runs:
        if r["kind"] == "dualhead":  # the anchors have no per-epoch curve
            curves.setdefault(r["name"], []).append(Path(r["dir"]) / "results.csv")
    if curves:
        plot_ablation(curves, out / "ablation.png")
    if failed:
        raise ValueError(f"{len(failed)} run(s) failed: " + ", ".join(f"{r['dir']}/train.log" for r in failed))
    return summary


if (
    __name__ == "__main__"
):  # one dualhead run of the ablation (a child process): python -m dualhead.detector.experiments.ablate run.json
    from dualhead.detector.train import train

    train(TrainConfig(**json.loads(Path(sys.argv[1]).read_text())))
