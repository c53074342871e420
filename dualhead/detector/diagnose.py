"""Where a detector's false positives come from: does "NMS-free" work, and if not, why?

At one operating point (score >= conf, what `dualhead predict` draws) every detection of an image
is matched, best score first, to the unmatched ground truth of its class with the highest IoU
>= 0.5 (COCO's rule at IoU 0.5). An unmatched detection is a false positive of one kind:

- dup: IoU > 0.5 with a better-scored true positive of the same class -- a second box on an
  object already found: what NMS removes, and what a one-to-one head must learn not to emit;
- cls: IoU >= 0.5 with a ground truth of another class (right place, wrong class);
- loc: IoU in [0.1, 0.5) with a ground truth of its class (found the object, box too poor);
- bkg: none of these (a box on background).

Counts are summed over the images; `breakdown_metrics` turns them into shares of the false
positives plus precision and recall, the columns results.csv logs per epoch.
"""

from __future__ import annotations

import torch

KINDS = ("dup", "cls", "loc", "bkg")


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from torchvision.ops import box_iou  # here: torchvision's import costs ~1 s of start-up

    if len(a) == 0 or len(b) == 0:
        return torch.zeros(len(a), len(b))
    return box_iou(a.double(), b.double())


def image_errors(
    det: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    conf: float = 0.25,
    iou_match: float = 0.5,
    iou_loc: float = 0.1,
) -> dict:
    """det (K, 6) x1 y1 x2 y2 score class; gt_boxes (n, 4) xyxy; gt_labels (n,) -> counts
    {'det', 'tp', 'fn', 'dup', 'cls', 'loc', 'bkg'} of one image."""
    det = det[det[:, 4] >= conf]
    det = det[det[:, 4].argsort(descending=True, stable=True)]
    gt_boxes, gt_labels = gt_boxes.reshape(-1, 4).double(), gt_labels.reshape(-1).long()
    cls = det[:, 5].long()
    ov = _iou(det[:, :4], gt_boxes)  # (K, n)
    same = cls[:, None] == gt_labels[None, :]
    dd = _iou(det[:, :4], det[:, :4])  # (K, K)
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool)
    tp = torch.zeros(len(det), dtype=torch.bool)
    out = dict(det=len(det), tp=0, fn=0, **{k: 0 for k in KINDS})
    for k in range(len(det)):
        cand = torch.where(same[k] & ~taken & (ov[k] >= iou_match), ov[k], torch.full_like(ov[k], -1.0))
        if len(cand) and cand.max() >= 0:
            taken[int(cand.argmax())] = True
            tp[k] = True
            out["tp"] += 1
        elif (tp[:k] & (cls[:k] == cls[k]) & (dd[k, :k] > iou_match)).any():
            out["dup"] += 1
        elif ((~same[k]) & (ov[k] >= iou_match)).any():
            out["cls"] += 1
        elif (same[k] & (ov[k] >= iou_loc)).any():
            out["loc"] += 1
        else:
            out["bkg"] += 1
    out["fn"] = int((~taken).sum())
    return out


def category_ids(gt: dict) -> list[int]:
    """Class k of a detection is the k-th category of a COCO-format ground truth in id order."""
    return sorted(c["id"] for c in gt["categories"])


def error_counts(gt: dict, detections: dict, conf: float = 0.25) -> dict:
    """Summed image_errors over a COCO-format ground truth (bbox xywh; class k = the k-th category
    in id order; crowd regions are no objects to find) and {image id: (K, 6) detections}."""
    cls_of = {c: k for k, c in enumerate(category_ids(gt))}
    boxes: dict[int, list] = {im["id"]: [] for im in gt["images"]}
    labels: dict[int, list] = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        if a.get("iscrowd"):
            continue
        x, y, w, h = a["bbox"]
        boxes[a["image_id"]].append([x, y, x + w, y + h])
        labels[a["image_id"]].append(cls_of[a["category_id"]])
    total = dict(det=0, tp=0, fn=0, **{k: 0 for k in KINDS})
    for i in boxes:
        d = detections.get(i, torch.zeros(0, 6))
        c = image_errors(
            d.float().cpu(),
            torch.tensor(boxes[i], dtype=torch.float64),
            torch.tensor(labels[i], dtype=torch.long),
            conf,
        )
        for k in total:
            total[k] += c[k]
    return total


def breakdown_metrics(c: dict, prefix: str = "") -> dict:
    """Counts -> {prefix+'fp_dup', ..._cls, ..._loc, ..._bkg: share of the false positives,
    prefix+'prec', prefix+'rec': precision and recall at the operating point}."""
    fp = sum(c[k] for k in KINDS)
    out = {f"{prefix}fp_{k}": (c[k] / fp if fp else 0.0) for k in KINDS}
    out[f"{prefix}prec"] = c["tp"] / c["det"] if c["det"] else 0.0
    out[f"{prefix}rec"] = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    return out
