"""`dualhead bench --train-loop`: where `dualhead train`'s time goes, in one run -- images/s of the
data pipeline alone (one process, then the run's workers; first pass renders, later passes hit
the render cache), of the up-front render on all cores that the trainer does, of the training
step alone (a batch kept in memory: the trainer's own TrainStep on `dualhead train`'s defaults),
of the whole loop with its data-wait share, and the seconds of one epoch-end evaluation (200
validation images, both heads, three COCOevals).
On the device given (`--device cuda` where there is a GPU)."""

from __future__ import annotations

import json
import time

import torch

from dualhead.detector.data import Augment, DetectionSet, EpochIndices, build_dataset, collate
from dualhead.detector.device import resolve_device
from dualhead.detector.evaluate import coco_ground_truth, evaluate
from dualhead.detector.train.config import TrainConfig
from dualhead.detector.train.heap import retain_freed_memory
from dualhead.detector.train.step import TrainStep
from dualhead.detector.train.trainer import render_processes


def _loader(train_set, batch, workers, seed=0, pin=False):
    sampler = EpochIndices(torch.utils.data.RandomSampler(train_set, generator=torch.Generator().manual_seed(seed)))
    return sampler, torch.utils.data.DataLoader(
        train_set,
        batch,
        sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
        pin_memory=pin,
    )


def _images_per_s(loader, sampler, epoch, limit):
    sampler.set_epoch(epoch)
    n, t = 0, time.perf_counter()
    for k, b in enumerate(loader):
        n += len(b["images"])
        if k + 1 >= limit:
            break
    return n / (time.perf_counter() - t)


def run(args) -> int:
    retain_freed_memory()  # as dualhead train
    device = resolve_device(args.device)
    cfg = TrainConfig(device=args.device, workers=args.workers)
    # the trainer draws the embedded images up front, so its default workers are those of data in memory
    imgsz, batch, n_img, workers = cfg.imgsz, cfg.batch, args.loop_images, cfg.loader_workers(device, in_memory=True)

    def fresh_set():
        # an empty render cache: a forked worker inherits its parent's, so each data row starts
        # from a dataset nothing has rendered yet, or its "first epoch" would not render
        return DetectionSet(build_dataset(cfg.data, "train", imgsz, n_img), Augment(), seed=0)

    rows = {}
    # the data pipeline alone: one process (the per-worker rate), then the run's workers
    for w in sorted({0, workers}):
        sampler, loader = _loader(fresh_set(), batch, w)
        first = _images_per_s(loader, sampler, 0, n_img // batch)  # renders every image
        later = _images_per_s(loader, sampler, 1, n_img // batch)  # render cache
        rows[f"data, {w} worker(s)"] = dict(first_epoch=first, later_epochs=later)
    # the step alone, a batch kept in memory
    train_set = fresh_set()
    torch.manual_seed(0)
    b = collate([train_set[(0, i)] for i in range(batch)])
    step = TrainStep.build(cfg, train_set.nc, device, 10_000)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        step(b)
    sync()
    n, t = 8, time.perf_counter()
    for _ in range(n):
        step(b)
    sync()
    rows["step (batch in memory)"] = dict(img_s=n * batch / (time.perf_counter() - t))
    # the whole loop: loader + step, and the time blocked waiting for data; a first epoch, as in a
    # run's: the images drawn up front on all cores first (ShapesDataset.prerender), as the trainer does

    procs, t = render_processes(), time.perf_counter()
    n = train_set.base.prerender(procs)
    rows["prerender (all cores)"] = dict(img_s=n / (time.perf_counter() - t), processes=procs)
    sampler, loader = _loader(train_set, batch, workers, pin=device.type == "cuda")
    sampler.set_epoch(0)
    wait, t, n = 0.0, time.perf_counter(), 0
    it = iter(loader)
    for _ in range(min(12, n_img // batch)):
        t1 = time.perf_counter()
        bb = next(it)
        wait += time.perf_counter() - t1
        step(bb)
        n += batch
    sync()
    dt = time.perf_counter() - t
    rows["loop (loader + step)"] = dict(img_s=n / dt, data_wait=wait / dt)
    # the epoch's end: evaluation of the EMA model on the validation set (rendered beforehand)
    val = build_dataset(cfg.data, "val", imgsz, cfg.val_len)
    gt = coco_ground_truth(val)
    val_loader = torch.utils.data.DataLoader(DetectionSet(val), 32, collate_fn=collate, num_workers=0)
    t = time.perf_counter()
    evaluate(step.ema.module, val_loader, gt, device, max_det=cfg.eval_max_det)
    rows["evaluation (per epoch)"] = dict(seconds=time.perf_counter() - t, images=len(val))
    print(
        f"dualhead train pipeline, {device}, imgsz {imgsz}, batch {batch}, workers {workers}, "
        f"torch threads {torch.get_num_threads()}"
    )
    for k, v in rows.items():
        print(f"  {k:<26}" + "  ".join(_fmt(name, x) for name, x in v.items()))
    with open(args.json, "w") as f:
        json.dump(dict(device=str(device), workers=workers, rows=rows), f, indent=1)
    return 0


def _fmt(name, x) -> str:
    if name == "data_wait":
        return f"{name} {x:.3f}"
    if name == "processes":
        return f"({x} processes)"
    if name in ("seconds", "images"):
        return f"{x:.2f} s" if name == "seconds" else f"({x} images)"
    return f"{name} {x:.0f} img/s"
