"""The training loop: data, model, dual-assignment loss, AdamW + warm-up/cosine, AMP, EMA,
atomic checkpoints with resume, tqdm, CSV + plots, DDP under torchrun."""

from __future__ import annotations

import csv
import gc
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import dualhead.detector.train.dist as dist
from dualhead.detector.data import Augment, DetectionSet, EpochIndices, build_dataset, collate
from dualhead.detector.device import resolve_device
from dualhead.detector.evaluate import coco_ground_truth, evaluate
from dualhead.detector.train.checkpoint import (
    check_same_model,
    ensure_writable,
    finished_epochs,
    load_checkpoint,
    make_checkpoint,
    remove_stale_temps,
    resume_training,
    save_atomic,
)
from dualhead.detector.train.config import MODE_BRANCHES, TrainConfig
from dualhead.detector.train.heap import retain_freed_memory
from dualhead.detector.train.plots import csv_row, plot_results, write_csv
from dualhead.detector.train.step import TrainStep
from dualhead.ops import check_errors


def pick_device(name: str) -> torch.device:
    dev = resolve_device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", dist.world()[1])
    return dev


class EpochMeter:
    """Sums of loss items and consistency counts over an epoch, kept on the training device (no
    host sync per step: read once at the epoch's end, then reduced over processes)."""

    STATS = ("n_pick", "top1", "top5", "top10", "n_valid", "gap")

    def __init__(self):
        self.items, self.n, self.st = {}, 0, None

    def add(self, items, stats):
        for k, v in items.items():
            v = v.detach().double()
            self.items[k] = self.items[k] + v if k in self.items else v
        self.n += 1
        if stats is not None:
            has = stats.valid & (stats.pick >= 0)
            r = stats.rank
            st = torch.stack(
                [has.sum(), (has & (r < 1)).sum(), (has & (r < 5)).sum(), (has & (r < 10)).sum(), stats.valid.sum()]
            ).double()
            st = torch.cat([st, (stats.gap * stats.valid).sum().double().reshape(1)])
            self.st = st if self.st is None else self.st + st

    def result(self) -> dict:
        keys = sorted(self.items)
        vec = torch.cat(
            [
                torch.stack([self.items[k] for k in keys]).cpu() if keys else torch.zeros(0, dtype=torch.float64),
                torch.tensor([float(self.n)], dtype=torch.float64),
            ]
        )
        vec = dist.all_sum(vec)
        st = dist.all_sum(self.st.cpu() if self.st is not None else torch.zeros(len(self.STATS), dtype=torch.float64))
        out = {k: float(v / vec[-1]) for k, v in zip(keys, vec[:-1])}
        if st[0] > 0:
            out.update(top1=float(st[1] / st[0]), top5=float(st[2] / st[0]), top10=float(st[3] / st[0]))
        if st[4] > 0:
            out["gap"] = float(st[5] / st[4])
        return out


class Throughput:
    """Images per second of an epoch and the share of its time spent waiting for the data loader
    (host time blocked in the loader's next(): the input pipeline is the limit when it is large)."""

    def __init__(self, loader):
        self.loader, self.wait, self.images, self.t0 = loader, 0.0, 0, time.perf_counter()

    def __iter__(self):
        it = iter(self.loader)
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - t
            self.images += len(batch["images"])
            yield batch

    def __len__(self):
        return len(self.loader)

    def result(self) -> dict:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        return {"img_s": self.images / dt, "data_wait": self.wait / dt}


def render_processes() -> int:
    """Processes that draw the embedded images before training: the cores this process computes
    on (torch's thread count: the cores on a plain run, OMP_NUM_THREADS under torchrun or an
    ablation's share), which the step is about to use anyway."""
    return max(1, torch.get_num_threads())


def seed_all(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig) -> dict:
    """Train; returns the last epoch's metrics (incl. 'map', 'map50' of the inference head)."""
    cfg.validate()
    retain_freed_memory()  # no page faults on each step's temporaries (bitwise neutral: dualhead.detector.train.heap)
    device = pick_device(cfg.device)
    dist.setup(device)
    try:
        return _train(cfg, device)
    finally:
        gc.unfreeze()
        dist.cleanup()


@dataclass
class RunFiles:
    """The run folder's files (--out)."""

    out: Path

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    @property
    def best(self) -> Path:
        return self.out / "best.pt"

    @property
    def csv(self) -> Path:
        return self.out / "results.csv"


@dataclass
class RunData:
    """A run's data: the training set and its loader (the sampler and generator that order each
    epoch), the validation set and its loader."""

    base: object
    train_set: DetectionSet
    val_base: object
    loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    sampler: EpochIndices
    order_gen: torch.Generator
    workers: int

    def set_epoch(self, seed: int, epoch: int) -> None:
        # The shuffle of epoch e depends on (seed, e) alone, never on how many epochs this process
        # has run: a resumed run, with or without workers, sees the same order as an uninterrupted one.
        self.sampler.set_epoch(epoch)
        self.order_gen.manual_seed(seed * 1_000_003 + epoch)


def build_data(cfg: TrainConfig, device: torch.device, world: int, main: bool) -> RunData:
    """The datasets of --data, the embedded images drawn up front, and their loaders."""
    base = build_dataset(cfg.data, "train", cfg.imgsz, cfg.train_len, cfg.images)
    train_set = DetectionSet(base, Augment() if cfg.augment else None, seed=cfg.seed)
    val_base = build_dataset(cfg.data, "val", cfg.imgsz, cfg.val_len, cfg.images)
    val_set = DetectionSet(val_base)
    # every embedded image drawn up front on this process's cores (ShapesDataset.prerender): the
    # first epoch's step then does not share its cores with rendering workers; the validation
    # images only where they are evaluated (the main process)
    for ds in (base, val_base) if main else (base,):
        if hasattr(ds, "prerender"):
            ds.prerender(render_processes(), progress=main)
    if cfg.batch % world:
        raise ValueError(f"batch must be divisible by the number of processes ({world}), got {cfg.batch}")
    order_gen = torch.Generator()
    sampler = EpochIndices(
        torch.utils.data.DistributedSampler(train_set, seed=cfg.seed)
        if world > 1
        else torch.utils.data.RandomSampler(train_set, generator=order_gen)
    )
    workers = cfg.loader_workers(device, world, in_memory=getattr(base, "in_memory", False))
    loader = torch.utils.data.DataLoader(
        train_set,
        cfg.batch // world,
        sampler=sampler,
        generator=torch.Generator().manual_seed(cfg.seed),
        collate_fn=collate,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise ValueError(f"batch {cfg.batch} is larger than the training set ({len(train_set)} images)")
    val_loader = torch.utils.data.DataLoader(val_set, 32, collate_fn=collate, num_workers=0)
    return RunData(base, train_set, val_base, loader, val_loader, sampler, order_gen, workers)


def resume(cfg: TrainConfig, run: TrainStep, files: RunFiles, main: bool) -> tuple[int, float, dict | None]:
    """--resume: the state of last.pt put back into run. Returns (first epoch to train, best mAP so
    far, the checkpoint's metrics if it has finished every epoch already, else None)."""
    ckpt = load_checkpoint(files.last, map_location=run.device, option="--resume")
    check_same_model(ckpt, run.model, files.last)
    if finished_epochs(ckpt) >= cfg.epochs:
        if main:
            print(
                f"{files.last} has finished all {finished_epochs(ckpt)} epochs (mAP@.5:.95 "
                f"{ckpt['metrics'].get('map', float('nan')):.4f}): nothing to resume; raise --epochs to train on"
            )
        return 0, -1.0, ckpt["metrics"]
    start_epoch, best = resume_training(ckpt, run)
    if main:
        reconcile_csv(files.csv, ckpt["metrics"])
        print(f"resuming from {files.last} at epoch {start_epoch + 1}")
    return start_epoch, best, None


def distribute(cfg: TrainConfig, run: TrainStep, device: torch.device, world: int) -> None:
    """Under torchrun: the model wrapped in DistributedDataParallel (and compiled after wrapping)."""
    run.ddp = torch.nn.parallel.DistributedDataParallel(
        run.model, device_ids=[device.index] if device.type == "cuda" else None
    )
    # DDP averages gradients over processes; the loss is scaled back by the world size so the
    # step matches one process seeing the whole batch (ultralytics does the same)
    run.scale = world
    if cfg.compile:
        run.compile()


def train_epoch(cfg: TrainConfig, run: TrainStep, data: RunData, epoch: int, main: bool) -> dict:
    """One pass over the training set: the epoch's mean losses, consistency and pace."""
    data.set_epoch(cfg.seed, epoch)
    run.criterion.set_epoch(epoch)
    run.ddp.train()
    meter, pace = EpochMeter(), Throughput(data.loader)
    # no bar unless a terminal shows it (disable=None): logs of ablation runs get the epoch lines only
    bar = tqdm(pace, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=None if main else True, leave=False, mininterval=2)
    for step, batch in enumerate(bar):
        loss, items, stats = run(batch)
        meter.add(items, stats)
        if main and step % 25 == 0:  # reading the loss is a host sync on a GPU: not every step
            p = pace.result()
            bar.set_postfix(
                loss=f"{float(loss.detach()) / len(batch['images']):.3f}",
                img_s=f"{p['img_s']:.0f}",
                data_wait=f"{p['data_wait']:.0%}",
                refresh=False,
            )
    check_errors()  # CUDA reports bad targets at the next assign call; the epoch's last batch too
    metrics = {"lr": run.opt.param_groups[0]["lr"]}
    metrics.update({k: round(v, 3) for k, v in pace.result().items()})
    metrics.update(meter.result())
    return metrics


def evaluate_epoch(cfg: TrainConfig, run: TrainStep, data: RunData, gt: dict) -> dict:
    """The EMA model (else the model) evaluated on the validation set: the inference head's mAP and
    false-positive kinds, the o2m head's mAP with NMS beside it."""
    eval_model = run.ema.module if run.ema is not None else run.model
    ev = evaluate(eval_model, data.val_loader, gt, run.device, max_det=cfg.eval_max_det)
    inf = eval_model.head.infer_branch
    metrics = dict(map=ev[inf]["map"], map50=ev[inf]["map50"])
    # the inference head's false positives at score 0.25 by kind (dualhead.detector.diagnose)
    metrics.update({k: v for k, v in ev[inf].items() if k.startswith("fp_") or k in ("prec", "rec")})
    if "map_nms" in ev[inf]:
        metrics["map_o2o_nms"] = ev[inf]["map_nms"]
    if "o2m" in ev and inf != "o2m":
        metrics.update(map_o2m_nms=ev["o2m"]["map"], map50_o2m_nms=ev["o2m"]["map50"])
    return metrics


def _train(cfg: TrainConfig, device: torch.device) -> dict:
    rank, _, world = dist.world()
    main = dist.is_main()
    seed_all(cfg.seed + rank)
    files = RunFiles(Path(cfg.out))
    if main:
        ensure_writable(files.out, "--out")
        for p in (files.last, files.best):
            remove_stale_temps(p)
    if cfg.resume and not files.last.is_file():
        raise ValueError(f"--resume: no checkpoint {files.last} to continue (run without --resume to start one)")
    data = build_data(cfg, device, world, main)
    run = TrainStep.build(cfg, data.base.nc, device, cfg.epochs * len(data.loader))
    start_epoch, best = 0, -1.0
    if cfg.resume:
        start_epoch, best, done = resume(cfg, run, files, main)
        if done is not None:
            return done
    if world > 1:
        distribute(cfg, run, device, world)
    gt = coco_ground_truth(data.val_base) if main else None
    t0, metrics = time.time(), {}
    if main:
        print(
            f"training {cfg.mode} ({', '.join(MODE_BRANCHES[cfg.mode])}) on {cfg.data}: {len(data.train_set)} "
            f"images, {sum(p.numel() for p in run.model.parameters()) / 1e6:.2f} M parameters, {device}, "
            f"{world} process(es), {data.workers} data worker(s), amp {'on' if run.amp else 'off'}"
            f"{', compiled' if cfg.compile else ''} -> {files.out}"
        )
    # the set-up's objects (rendered images, model, datasets: hundreds of thousands) out of the
    # cyclic garbage collector's reach: every full collection would walk them all again
    gc.freeze()
    for epoch in range(start_epoch, cfg.epochs):
        trained = train_epoch(cfg, run, data, epoch, main)
        metrics = {"epoch": epoch + 1, "time_s": round(time.time() - t0, 1), **trained}
        if main:
            metrics.update(evaluate_epoch(cfg, run, data, gt))
            ckpt = make_checkpoint(run, cfg, data.base.names, epoch, max(best, metrics["map"]), metrics)
            end_epoch(ckpt, metrics, metrics["map"] > best, files.out)
            best = max(best, metrics["map"])
            print(_summary(metrics))
        dist.barrier()
        if cfg.time_limit and time.time() - t0 > 60 * cfg.time_limit:
            if main:
                print(f"time limit {cfg.time_limit} min reached after epoch {epoch + 1}")
            break
    return metrics


def end_epoch(ckpt: dict, metrics: dict, is_best: bool, out_dir: Path) -> None:
    """The epoch's files, in an order that a kill at any point leaves consistent: the checkpoint
    first (atomic), then best.pt, then the results row. A resume trusts last.pt and rewrites
    results.csv to its epochs (reconcile_csv), so the two never disagree after a resume."""
    save_atomic(ckpt, out_dir / "last.pt")
    if is_best:
        save_atomic(ckpt, out_dir / "best.pt")
    write_csv(out_dir / "results.csv", metrics, append=metrics["epoch"] > 1)
    plot_results(out_dir / "results.csv")


def reconcile_csv(path: Path, last_metrics: dict) -> None:
    """results.csv made to hold exactly the epochs of the checkpoint being resumed: rows of later
    epochs (written after a checkpoint that a kill then did not follow) dropped, duplicates
    dropped, the checkpoint's own row added if the kill came before it was written."""
    upto = int(last_metrics["epoch"])
    rows, fields = [], list(last_metrics)
    if path.exists():
        with open(path, newline="") as f:
            r = csv.DictReader(f)
            fields = r.fieldnames or fields
            seen = set()
            for row in r:
                e = int(float(row["epoch"]))
                if e <= upto and e not in seen:
                    seen.add(e)
                    rows.append(row)
    if not any(int(float(r["epoch"])) == upto for r in rows):
        rows.append(csv_row(last_metrics))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _summary(m: dict) -> str:
    parts = [f"epoch {m['epoch']}", f"{m['time_s']:.0f}s", f"{m['img_s']:.0f} img/s", f"data wait {m['data_wait']:.0%}"]
    parts += [f"{k} {m[k]:.3f}" for k in ("o2m_box", "o2m_cls", "o2o_box", "o2o_cls") if k in m]
    parts += [f"{k} {m[k]:.3f}" for k in ("top1", "top5", "gap") if k in m]
    parts += [f"mAP {m['map']:.3f}", f"mAP50 {m['map50']:.3f}"]
    if "map_o2m_nms" in m:
        parts.append(f"o2m+NMS mAP {m['map_o2m_nms']:.3f}")
    if "fp_dup" in m:
        parts.append(f"FP dup/cls/loc/bkg {m['fp_dup']:.0%}/{m['fp_cls']:.0%}/{m['fp_loc']:.0%}/{m['fp_bkg']:.0%}")
    return "  ".join(parts)
