"""The run's results.csv (one row per epoch: read, written) and its curves (matplotlib, headless)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def read_csv(path) -> dict:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = {k: [] for k in (rows[0].keys() if rows else [])}
    for r in rows:
        for k, v in r.items():
            cols[k].append(float(v) if v not in ("", None) else float("nan"))
    return cols


def csv_row(row: dict) -> dict:
    """A metrics row as results.csv writes it: floats to 6 significant digits."""
    return {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}


def write_csv(path: Path, row: dict, append: bool):
    """One row of results.csv (append: after the rows already there, in their columns)."""
    exists = path.exists() and append
    fields = list(row)
    if exists:
        with open(path, newline="") as f:
            fields = next(csv.reader(f))
    with open(path, "a" if exists else "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if not exists:
            w.writeheader()
        w.writerow(csv_row(row))


def loss_columns(cols) -> list:
    """The heads' loss items (o2m_box, ..., o2o_dfl); not fp_cls, the wrong-class share of the FPs."""
    return [k for k in cols if k.startswith(("o2m_", "o2o_")) and k.endswith(("_box", "_cls", "_dfl"))]


def plot_results(csv_path, out_path=None) -> Path:
    import matplotlib  # here: ~0.3 s of start-up, for the plots only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = read_csv(csv_path)
    out_path = Path(out_path or Path(csv_path).with_name("results.png"))
    ep = cols.get("epoch", [])
    fig, ax = plt.subplots(1, 5, figsize=(22, 4))
    # fixed margins instead of tight_layout, and a fast PNG compression: the plot is drawn every
    # epoch in the training process, and tight_layout's measuring is most of its cost
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.13, top=0.92, wspace=0.18)
    for k in loss_columns(cols):
        ax[0].plot(ep, cols[k], label=k)
    ax[0].set_title("training losses (gain-weighted)")
    for k in ("map", "map50", "map_o2m_nms", "map50_o2m_nms", "map_o2o_nms"):
        if k in cols and any(v == v for v in cols[k]):
            ax[1].plot(ep, cols[k], marker="o", label=k)
    ax[1].set_title("val mAP (o2o: no NMS; o2m: NMS)")
    for k in ("top1", "top5", "top10"):
        if k in cols:
            ax[2].plot(ep, cols[k], marker="o", label=f"o2o pick in o2m {k}")
    ax[2].set_title("assignment consistency")
    if "gap" in cols:
        ax[3].plot(ep, cols["gap"], marker="o", label="gap")
    ax[3].set_title("supervision gap (1-Wasserstein)")
    # the inference head's false positives at score 0.25 by kind (dualhead.detector.diagnose)
    for k, name in (
        ("fp_dup", "duplicate"),
        ("fp_cls", "wrong class"),
        ("fp_loc", "localisation"),
        ("fp_bkg", "background"),
    ):
        if k in cols:
            ax[4].plot(ep, cols[k], marker="o", label=name)
    for k in ("prec", "rec"):
        if k in cols:
            ax[4].plot(ep, cols[k], ls="--", label={"prec": "precision", "rec": "recall"}[k])
    ax[4].set_title("inference head @ score 0.25: FP shares")
    for a in ax:
        a.set_xlabel("epoch")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.savefig(out_path, dpi=90, pil_kwargs={"compress_level": 1})
    plt.close(fig)
    return out_path


def plot_ablation(curves: dict, out_path) -> Path:
    """curves: {run name: [results.csv path, ...] (one per seed)} -> one figure: mAP per epoch
    (mean over seeds, band = min..max), and the inference head's duplicate share of false positives,
    precision and recall at score 0.25."""
    import matplotlib  # here: ~0.3 s of start-up, for the plots only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("map", "mAP@.5:.95 (inference head; dashed: o2o + NMS)"),
        ("fp_dup", "duplicate share of false positives @0.25"),
        ("rec", "recall @0.25"),
        ("prec", "precision @0.25"),
    )
    fig, ax = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for name, paths in curves.items():
        cols = [read_csv(p) for p in paths if Path(p).is_file()]
        for a, (key, title) in zip(ax, panels):
            runs = [c[key] for c in cols if key in c]
            if not runs:
                continue
            n = min(len(r) for r in runs)
            v = np.array([r[:n] for r in runs])
            ep = np.arange(1, n + 1)
            (line,) = a.plot(ep, v.mean(0), marker="o", label=f"{name} ({len(runs)})")
            a.fill_between(ep, v.min(0), v.max(0), color=line.get_color(), alpha=0.15)
            a.set_title(title, fontsize=9)
            nms = [c["map_o2o_nms"][:n] for c in cols if key == "map" and "map_o2o_nms" in c]
            if nms:  # dashed: the same o2o head with NMS added (the duplicates' cost)
                a.plot(ep, np.mean(nms, 0), ls="--", color=line.get_color())
    for a in ax:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path
