"""dualhead's drop-ins against each codebase's own task-aligned assigner, run from that codebase's
own files (a checkout or an unpacked wheel that you fetch; their code is not part of dualhead:
YOLOv9 and mmyolo are GPL-3.0). Only the registries and containers around the assigners are
stood in for here (mmengine / mmdet infrastructure); every line of the assignment math that runs
is the codebase's.

    python benchmarks/compare_codebases.py --yolov9 DIR --mmyolo DIR --mmdet DIR [--seeds 4] [--json F]

DIR: --yolov9 a WongKinYiu/yolov9 checkout (utils/); --mmyolo an open-mmlab/mmyolo checkout
(mmyolo/models/task_modules/assigners, mmyolo/models/losses/iou_loss.py); --mmdet an unpacked
mmdet wheel or checkout (mmdet/models/task_modules/assigners/task_aligned_assigner.py,
mmdet/structures/bbox/bbox_overlaps.py).

Per codebase and batch kind (B = 4, N = 8400 at 640 px, C = 80, 1-50 objects; kinds: default,
early-training (low scores, loose boxes), tiny 2-20 px, integer boxes, heavy overlap): whether the
positives and the object per positive are the same, the largest target-score difference, then the
speed of both on a W1 batch (B = 16), CPU, same process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import types

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dualhead.anchors import STRIDES  # noqa: E402
from dualhead.integrations import mmdet as dh_mmdet  # noqa: E402
from dualhead.integrations import mmyolo as dh_mmyolo  # noqa: E402
from dualhead.integrations import yolov9 as dh_yolov9  # noqa: E402
from dualhead.synthetic import make_batch  # noqa: E402


def _package(name: str, path: str | None = None) -> types.ModuleType:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sub = ".".join(parts[:i])
        if sub not in sys.modules:
            m = types.ModuleType(sub)
            m.__path__ = [path] if (path and i == len(parts)) else []
            sys.modules[sub] = m
    return sys.modules[name]


def _load(name: str, path: str) -> types.ModuleType:
    _package(name.rpartition(".")[0])
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class _Registry:
    """Stands in for an mm* Registry: register_module as a no-op decorator; build for the IoU."""

    def __init__(self, build=None):
        self._build = build

    def register_module(self, *a, **k):
        return (lambda c: c) if not a or not callable(a[0]) else a[0]

    def build(self, cfg):
        return self._build(cfg)


def load_yolov9(root: str):
    sys.path.insert(0, root)  # yolov9's modules import each other as top-level `utils`
    from utils.tal.assigner import TaskAlignedAssigner

    return TaskAlignedAssigner


def load_mmyolo(root: str):
    for name in ("mmdet.models.losses.utils", "mmdet.structures.bbox"):
        _package(name)
    sys.modules["mmdet.models.losses.utils"].weight_reduce_loss = None
    sys.modules["mmdet.structures.bbox"].HorizontalBoxes = None
    _package("mmyolo.registry").TASK_UTILS = _Registry()
    sys.modules["mmyolo.registry"].MODELS = _Registry()
    iou = _load("mmyolo.models.losses.iou_loss", os.path.join(root, "mmyolo/models/losses/iou_loss.py"))
    _package("mmyolo.models.losses").bbox_overlaps = iou.bbox_overlaps
    adir = os.path.join(root, "mmyolo/models/task_modules/assigners")
    _package("mmyolo.models.task_modules.assigners", adir)
    _load("mmyolo.models.task_modules.assigners.utils", os.path.join(adir, "utils.py"))
    m = _load(
        "mmyolo.models.task_modules.assigners.batch_task_aligned_assigner",
        os.path.join(adir, "batch_task_aligned_assigner.py"),
    )
    return m.BatchTaskAlignedAssigner


def load_mmdet(root: str):
    ov = _load("peer_mmdet_bbox_overlaps", os.path.join(root, "mmdet/structures/bbox/bbox_overlaps.py"))

    class BboxOverlaps2D:  # mmdet's calculator: bbox_overlaps(bboxes1, bboxes2, mode="iou")
        def __call__(self, b1, b2):
            return ov.bbox_overlaps(b1[..., :4], b2[..., :4])

    _package("mmengine.structures").InstanceData = types.SimpleNamespace  # mmengine.data in older mmdet
    _package("mmengine.data").InstanceData = types.SimpleNamespace
    _package("mmdet.registry").TASK_UTILS = _Registry(build=lambda cfg: BboxOverlaps2D())
    _package("mmdet.utils").ConfigType = dict
    adir = os.path.join(root, "mmdet/models/task_modules/assigners")
    _package("mmdet.models.task_modules.assigners", adir)
    _package("mmdet.models.task_modules.assigners.assign_result").AssignResult = (
        lambda num_gts, gt_inds, max_overlaps, labels=None: types.SimpleNamespace(
            num_gts=num_gts, gt_inds=gt_inds, max_overlaps=max_overlaps, labels=labels
        )
    )
    _package("mmdet.models.task_modules.assigners.base_assigner").BaseAssigner = object
    m = _load(
        "mmdet.models.task_modules.assigners.task_aligned_assigner", os.path.join(adir, "task_aligned_assigner.py")
    )
    return m.TaskAlignedAssigner


# --- batches ---
def batch(kind: str, seed: int, B: int = 4, n_gt=(1, 50)):
    """An ultralytics-layout batch (dualhead.synthetic) reshaped into one of the kinds above."""
    bt = make_batch(B=B, C=80, seed=seed, n_gt=n_gt, kind="tiny" if kind == "tiny" else "coco")
    g = torch.Generator().manual_seed(seed + 1000)
    if kind == "early":  # low, flat scores; loose boxes around every anchor
        bt.pd_scores = torch.rand(bt.pd_scores.shape, generator=g) * 0.05
        N = bt.anc_points.shape[0]
        stride = torch.cat([torch.full(((640 // s) ** 2,), float(s)) for s in STRIDES])
        d = torch.rand(B, N, 4, generator=g) * stride[None, :, None] * 4
        bt.pd_bboxes = torch.cat((bt.anc_points - d[..., :2], bt.anc_points + d[..., 2:]), -1)
    if kind == "integer":
        bt.gt_bboxes = bt.gt_bboxes.round() * bt.mask_gt
    if kind == "overlap":  # every object twice, the copy jittered by up to 3 px
        n = bt.gt_bboxes.shape[1]
        jit = (torch.rand(bt.gt_bboxes.shape, generator=g) - 0.5) * 6
        copy = ((bt.gt_bboxes + jit).clamp(0, 640) * bt.mask_gt).clone()
        copy[..., 2:] = torch.maximum(copy[..., 2:], copy[..., :2])
        bt.gt_bboxes = torch.cat((bt.gt_bboxes, copy), 1)
        bt.gt_labels = torch.cat((bt.gt_labels, bt.gt_labels), 1)
        bt.mask_gt = torch.cat((bt.mask_gt, bt.mask_gt), 1)
        assert bt.gt_bboxes.shape[1] == 2 * n
    return bt


def priors_points(anc):
    """mmyolo's priors (N, 4): x, y, stride_w, stride_h."""
    stride = torch.cat([torch.full(((640 // s) ** 2,), float(s)) for s in STRIDES])
    return torch.cat((anc, stride[:, None], stride[:, None]), 1)


def priors_boxes(anc):
    """TOOD's priors (N, 4): one anchor box of 8 strides per point (octave_base_scale 8)."""
    stride = torch.cat([torch.full(((640 // s) ** 2,), float(s)) for s in STRIDES])
    half = stride[:, None] * 4
    return torch.cat((anc - half, anc + half), 1)


def same_dense(theirs, ours, fg_t, fg_o):
    """(positives equal, object per positive equal (its target box), max target-score difference)."""
    lt, bt_, st = theirs
    lo, bo, so = ours
    pos = bool(torch.equal(fg_t.bool(), fg_o.bool()))
    f = fg_t.bool() & fg_o.bool()
    obj = bool(torch.equal(bt_[f].float(), bo[f].float()) and torch.equal(lt[f].long(), lo[f].long()))
    return pos, obj, float((st.float() - so.float()).abs().max())


# --- per codebase: (name, run theirs, run ours, compare) ---
def cases(peers):
    out = []
    if "yolov9" in peers:
        T = peers["yolov9"]

        def y9(bt, mine, T=T):
            a = (dh_yolov9.TaskAlignedAssigner if mine else T)(topk=10, num_classes=80, alpha=0.5, beta=6.0)
            return a(bt.pd_scores, bt.pd_bboxes, bt.anc_points, bt.gt_labels, bt.gt_bboxes, bt.mask_gt)

        def y9cmp(t, o):
            return same_dense(t[:3], o[:3], t[3], o[3])

        out.append(("yolov9 utils/tal/assigner.py (top-10, 0.5, 6)", y9, y9cmp))
    if "mmyolo" in peers:
        T = peers["mmyolo"]
        for label, kw in (
            (
                "mmyolo YOLOv8 config (CIoU, top-10, 0.5, 6, eps 1e-9)",
                dict(use_ciou=True, topk=10, alpha=0.5, beta=6.0, eps=1e-9),
            ),
            ("mmyolo YOLOv6 config (IoU, top-13, 1, 6)", dict(use_ciou=False, topk=13, alpha=1.0, beta=6.0)),
        ):

            def mmy(bt, mine, kw=kw, T=T):
                a = (dh_mmyolo.BatchTaskAlignedAssigner if mine else T)(num_classes=80, **kw)
                r = a(bt.pd_bboxes, bt.pd_scores, priors_points(bt.anc_points), bt.gt_labels, bt.gt_bboxes, bt.mask_gt)
                return r["assigned_labels"], r["assigned_bboxes"], r["assigned_scores"], r["fg_mask_pre_prior"]

            def mmycmp(t, o):
                return same_dense(t[:3], o[:3], t[3], o[3])

            out.append((label, mmy, mmycmp))
    if "mmdet" in peers:
        T = peers["mmdet"]

        def tood(bt, mine, T=T):
            a = (dh_mmdet.TaskAlignedAssigner if mine else T)(topk=13)
            pri = priors_boxes(bt.anc_points)
            res = []
            for b in range(bt.pd_scores.shape[0]):
                m = bt.mask_gt[b, :, 0].bool()
                pred = types.SimpleNamespace(priors=pri, bboxes=bt.pd_bboxes[b], scores=bt.pd_scores[b])
                gts = types.SimpleNamespace(bboxes=bt.gt_bboxes[b][m], labels=bt.gt_labels[b, :, 0][m].long())
                r = a.assign(pred, gts, None, 1, 6)
                res.append((r.gt_inds, r.max_overlaps, r.assign_metrics))
            return [torch.stack(x) for x in zip(*res)]

        def toodcmp(t, o):
            pos = bool(torch.equal(t[0] > 0, o[0] > 0))
            obj = bool(torch.equal(t[0], o[0]))
            f = (t[0] > 0) & (o[0] > 0)
            d = float(torch.cat(((t[1][f] - o[1][f]).abs(), (t[2][f] - o[2][f]).abs(), torch.zeros(1))).max())
            return pos, obj, d

        out.append(("mmdetection TOOD TaskAlignedAssigner (top-13, 1, 6; per image)", tood, toodcmp))
    return out


def timed(fn, reps=3):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--yolov9")
    ap.add_argument("--mmyolo")
    ap.add_argument("--mmdet")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    peers = {}
    for key, loader in (("yolov9", load_yolov9), ("mmyolo", load_mmyolo), ("mmdet", load_mmdet)):
        if getattr(a, key):
            peers[key] = loader(getattr(a, key))
    rows, status = [], 0
    with torch.no_grad():
        for label, run, cmp in cases(peers):
            for kind in ("default", "early", "tiny", "integer", "overlap"):
                pos_all, obj_all, worst = True, True, 0.0
                for seed in range(a.seeds):
                    bt = batch(kind, seed)
                    pos, obj, d = cmp(run(bt, False), run(bt, True))
                    pos_all &= pos
                    obj_all &= obj
                    worst = max(worst, d)
                ok = pos_all and obj_all and worst <= 1e-5
                status |= not ok
                rows.append(
                    dict(
                        codebase=label,
                        kind=kind,
                        seeds=a.seeds,
                        positives_equal=pos_all,
                        object_equal=obj_all,
                        max_score_diff=worst,
                    )
                )
                print(
                    f"{label:68s} {kind:8s} positives {'=' if pos_all else 'DIFFER'}  object {'=' if obj_all else 'DIFFER'}  max score diff {worst:.1e}",
                    flush=True,
                )
            bt = batch("default", 0, B=16)
            t_theirs = timed(lambda run=run, bt=bt: run(bt, False))
            t_ours = timed(lambda run=run, bt=bt: run(bt, True))
            rows.append(dict(codebase=label, kind="speed W1 B=16", theirs_ms=t_theirs * 1e3, ours_ms=t_ours * 1e3))
            print(
                f"{label:68s} W1 B=16: theirs {t_theirs * 1e3:.1f} ms, dualhead {t_ours * 1e3:.2f} ms, {t_theirs / t_ours:.0f}x",
                flush=True,
            )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
