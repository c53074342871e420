"""COCO mAP (COCOeval: faster-coco-eval, or pycocotools) of a detector on a dataset: the o2o head without NMS, the o2m head with NMS;
plus each head's false-positive breakdown (dualhead.detector.diagnose) and the o2o head's mAP with NMS added
(how much NMS would still buy it: zero when the one-to-one head emits no duplicates)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io

import numpy as np
import torch

from dualhead.detector.data import as_float
from dualhead.detector.diagnose import breakdown_metrics, category_ids, error_counts
from dualhead.detector.nn.postprocess import branch_detections


def coco_ground_truth(dataset) -> dict:
    """COCO-format ground truth of a dataset of (image, boxes xyxy, labels); image id = index,
    category id = class + 1. A dataset with its own COCO file (CocoDataset) gives that file's."""
    if hasattr(dataset, "ground_truth"):
        return dataset.ground_truth()
    images, anns = [], []
    for i in range(len(dataset)):
        img, boxes, labels = dataset[i][:3]
        h, w = img.shape[-2:] if isinstance(img, torch.Tensor) else img.shape[:2]
        images.append({"id": i, "width": int(w), "height": int(h)})
        for b, c in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(labels).reshape(-1)):
            bw, bh = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(c) + 1,
                    "iscrowd": 0,
                    "bbox": [float(b[0]), float(b[1]), bw, bh],
                    "area": bw * bh,
                }
            )
    cats = [{"id": c + 1, "name": n} for c, n in enumerate(dataset.names)]
    return {"images": images, "annotations": anns, "categories": cats}


def coco_eval(gt: dict, detections: dict, engine: str | None = None):
    """COCOeval of {image id: (K, 6) tensor x1 y1 x2 y2 score class} against a coco_ground_truth
    dict, evaluated and summarised (its printout swallowed); None when there is nothing to score.

    engine: 'faster' = faster-coco-eval's C++ COCOeval (the default when installed: faster per
    call, and an epoch makes three), 'pycocotools' = the reference implementation. Their
    statistics agree to ~1e-16, a mean's last bits (it sums the precisions in another order;
    tests/test_evaluate.py checks one against the other)."""
    engine = engine or ("faster" if _has_faster_coco_eval() else "pycocotools")
    if engine == "faster":
        # whichever evaluator is installed, imported when it is used
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    elif engine == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        raise ValueError(f"engine must be 'faster' or 'pycocotools', got {engine!r}")
    dets = _result_annotations(detections, category_ids(gt))
    if not dets or not gt["annotations"]:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        res = coco.loadRes(dets)
        ev = COCOeval(coco, res, "bbox")
        ev.params.imgIds = [im["id"] for im in gt["images"]]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _result_annotations(detections: dict, cat_ids: list[int]) -> list:
    """COCO result dicts (bbox x y w h) of {image id: (K, 6)}, in the detections' order. The
    columns are converted in one go instead of a tolist and unpack per detection (~60 k of them,
    three times an epoch): float64 from the start, so w = x2 - x1 is the same double a per-row
    Python subtraction gives."""
    parts = [(int(i), d) for i, d in detections.items() if len(d)]
    if not parts:
        return []
    a = torch.cat([d.reshape(-1, 6).double() for _, d in parts])
    img = [i for i, d in parts for _ in range(len(d))]
    x1, y1, x2, y2, score, cls = a.unbind(1)
    cols = zip(
        img,
        torch.tensor(cat_ids)[cls.long()].tolist(),
        x1.tolist(),
        y1.tolist(),
        (x2 - x1).tolist(),
        (y2 - y1).tolist(),
        score.tolist(),
    )
    return [{"image_id": i, "category_id": c, "bbox": [x, y, w, h], "score": sc} for i, c, x, y, w, h, sc in cols]


def coco_map(gt: dict, detections: dict, engine: str | None = None) -> dict:
    """detections: {image id: (K, 6) tensor x1 y1 x2 y2 score class} -> {'map': mAP@0.5:0.95,
    'map50': mAP@0.5} by COCOeval (coco_eval)."""
    ev = coco_eval(gt, detections, engine)
    if ev is None:
        return {"map": 0.0, "map50": 0.0}
    return {"map": float(max(ev.stats[0], 0.0)), "map50": float(max(ev.stats[1], 0.0))}


@functools.cache
def _has_faster_coco_eval() -> bool:
    return importlib.util.find_spec("faster_coco_eval") is not None


def with_nms(dets: dict, iou: float = 0.7) -> dict:
    """Per-class NMS (torchvision) applied to already-decoded detections {id: (K, 6)}."""
    from torchvision.ops import batched_nms  # here: torchvision's import costs ~1 s of start-up

    return {i: d[batched_nms(d[:, :4], d[:, 4], d[:, 5].long(), iou)] for i, d in dets.items()}


@torch.no_grad()
def evaluate(
    model,
    loader,
    gt: dict,
    device,
    branches=None,
    max_det: int = 300,
    conf: float = 0.001,
    iou: float = 0.7,
    diag_conf: float = 0.25,
    one_class: bool = False,
) -> dict:
    """mAP of each requested branch: 'o2o' decoded NMS-free (top-k; one_class: one class per
    anchor), 'o2m' with NMS.
    Returns {branch: {'map', 'map50', 'fp_dup', 'fp_cls', 'fp_loc', 'fp_bkg', 'prec', 'rec'}} (the
    breakdown at score >= diag_conf), and for 'o2o' also 'map_nms': its detections with NMS added."""
    was_training = model.training
    model.eval()
    branches = tuple(branches or model.head.branches)
    dets = {b: {} for b in branches}
    # a dataset with its own COCO file maps detections back to its image ids and pixels
    restore = getattr(getattr(loader.dataset, "base", loader.dataset), "restore", None)
    for batch in loader:
        out = model(as_float(batch["images"], device), branches=branches)
        for b in branches:
            for i, d in zip(batch["index"].tolist(), branch_detections(b, *out[b], max_det, conf, iou, one_class)):
                key, d = restore(i, d.cpu()) if restore else (i, d.cpu())
                dets[b][key] = d
    model.train(was_training)
    return {b: detection_metrics(gt, dets[b], nms_free=b == "o2o", iou=iou, diag_conf=diag_conf) for b in branches}


def detection_metrics(gt: dict, dets: dict, nms_free: bool, iou: float = 0.7, diag_conf: float = 0.25) -> dict:
    """What the training log and the ablation report of any detector's detections {id: (K, 6)}:
    'map', 'map50', the false-positive breakdown at score >= diag_conf, and for an NMS-free
    detector 'map_nms' (its detections with NMS added: what NMS would still buy it)."""
    res = {**coco_map(gt, dets), **breakdown_metrics(error_counts(gt, dets, diag_conf))}
    if nms_free:
        res["map_nms"] = coco_map(gt, with_nms(dets, iou))["map"]
    return res
