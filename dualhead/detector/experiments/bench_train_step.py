"""`dualhead bench --train-step`: one whole ultralytics training step (forward + loss + backward)
of YOLOv10n, with ultralytics' own assigner and with dualhead's (integrations.ultralytics.patch),
and the share of the step spent in the assigner calls (both heads of E2ELoss)."""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time

import torch

from dualhead.bench import machine
from dualhead.integrations import ultralytics as dh_ultralytics
from dualhead.integrations.ultralytics import loss_heads
from dualhead.synthetic import make_batch


def _batch_dict(B, imgsz, seed=0):
    """W1-like ground truths (1-50 COCO-sized boxes per image) in ultralytics' batch format."""
    bt = make_batch(B=B, imgsz=imgsz, C=80, n_gt=(1, 50), seed=seed)
    idx, cls, boxes = [], [], []
    for b in range(B):
        m = bt.mask_gt[b, :, 0].bool()
        g = bt.gt_bboxes[b][m]
        g = g[(g[:, 2] > g[:, 0]) & (g[:, 3] > g[:, 1])]
        idx.append(torch.full((len(g),), float(b)))
        cls.append(bt.gt_labels[b][m][: len(g), 0])
        xywh = torch.cat(((g[:, :2] + g[:, 2:]) / 2, g[:, 2:] - g[:, :2]), 1) / imgsz
        boxes.append(xywh)
    g = torch.Generator().manual_seed(seed)
    return {
        "img": torch.rand(B, 3, imgsz, imgsz, generator=g),
        "batch_idx": torch.cat(idx),
        "cls": torch.cat(cls)[:, None],
        "bboxes": torch.cat(boxes),
    }


def _timed_assigners(criterion, log):
    for h in loss_heads(criterion):
        fwd = h.assigner.forward

        def timed(*a, _fwd=fwd, **k):
            t = time.perf_counter()
            out = _fwd(*a, **k)
            log.append(time.perf_counter() - t)
            return out

        h.assigner.forward = timed  # nn.Module.__call__ looks forward up on the instance


def measure(model_cfg="yolov10n.yaml", batch=16, imgsz=640, steps=3, threads=2):
    # optional (the test extra): --train-step needs it, nothing else does
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = DetectionModel(model_cfg, nc=80, verbose=False)
    model.args = get_cfg()
    model.train()
    data = _batch_dict(batch, imgsz)
    crits, logs = {}, {}
    for impl in ("ultralytics", "dualhead"):
        ctx = dh_ultralytics.patched() if impl == "dualhead" else contextlib.nullcontext()
        with ctx:
            crits[impl] = model.init_criterion()
        logs[impl] = []
        _timed_assigners(crits[impl], logs[impl])
    step_s = {i: [] for i in crits}
    assign_s = {i: [] for i in crits}
    losses = {}
    for r in range(steps + 1):  # interleaved, so machine noise hits both alike; round 0 warms up
        for impl, crit in crits.items():
            model.criterion = crit
            logs[impl].clear()
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            loss, _ = model.loss(data)
            loss.sum().backward()
            dt = time.perf_counter() - t
            if r:
                step_s[impl].append(dt)
                assign_s[impl].append(sum(logs[impl]))
            else:
                losses[impl] = loss.detach().clone()
    rows = []
    for impl in crits:
        step, assign = statistics.median(step_s[impl]), statistics.median(assign_s[impl])
        rows.append(
            dict(
                impl=impl,
                step_s=step,
                assign_s=assign,
                share=assign / step,
                batch=batch,
                imgsz=imgsz,
                model=model_cfg,
                threads=threads,
                steps=steps,
            )
        )
    torch.testing.assert_close(losses["dualhead"], losses["ultralytics"], rtol=1e-5, atol=1e-6)
    return rows


def run(args) -> int:
    rows = measure(batch=args.batch or 16, steps=max(args.rounds, 1), threads=args.threads)
    print(f"{'assigner':<13}{'step ms':>10}{'assign ms':>11}{'share':>8}")
    for r in rows:
        print(f"{r['impl']:<13}{r['step_s'] * 1e3:>10.0f}{r['assign_s'] * 1e3:>11.1f}{r['share'] * 100:>7.1f}%")
    u, d = rows
    print(
        f"step time ratio (ultralytics / dualhead) {u['step_s'] / d['step_s']:.3f}; assignment "
        f"{u['assign_s'] / d['assign_s']:.1f}x faster; "
        f"{rows[0]['model']} batch {u['batch']} at {u['imgsz']} px, {u['threads']} threads"
    )

    meta = dict(
        date=time.strftime("%Y-%m-%d %H:%M"),
        machine=machine(),
        torch=torch.__version__,
        command=" ".join(["dualhead", "bench"] + sys.argv[2:]),
    )
    with open(args.json, "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    print(f"-> {args.json}")
    return 0
