"""Input checks shared by every assigner entry point (contract §4).

Each failure is a ValueError naming the argument and the offending value or shape. The checks
that need data (labels in range, finite non-inverted boxes) look only at real ground truths.
"""

from __future__ import annotations

import torch

from dualhead.conventions import IOU_KINDS  # noqa: F401  (re-exported: the IoU kinds by name)


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))  # of a tensor: _tensor has refused anything else


def _tensor(name, t):
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def _float(name, t):
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (fp32/fp16/bf16), got {t.dtype}")


def check_inputs(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, prefix="", check_values=True):
    """Validate the ultralytics-layout inputs of one head (check_values=False: shapes, dtypes and
    devices only -- for the compiled kernel, which checks the values itself, and for a second
    head whose ground truths were already checked).

    Returns (gt_labels (B, M) int64, mask_gt (B, M) bool): the (B, M, 1) forms are squeezed, float
    labels truncated like ultralytics' `.long()`.
    """
    names = [prefix + "pd_scores", prefix + "pd_bboxes", "anc_points", "gt_labels", "gt_bboxes", "mask_gt"]
    ts = [pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt]
    for n, t in zip(names, ts):
        _tensor(n, t)
    if pd_scores.dim() != 3:
        raise ValueError(f"{names[0]} must be (B, N, C), got {_shape(pd_scores)}")
    B, N, C = pd_scores.shape
    if pd_bboxes.shape != (B, N, 4):
        raise ValueError(f"{names[1]} must be (B, N, 4) = {(B, N, 4)}, got {_shape(pd_bboxes)}")
    if anc_points.shape != (N, 2):
        raise ValueError(f"anc_points must be (N, 2) = {(N, 2)}, got {_shape(anc_points)}")
    if gt_bboxes.dim() != 3 or gt_bboxes.shape[0] != B or gt_bboxes.shape[2] != 4:
        raise ValueError(f"gt_bboxes must be (B, M, 4) with B={B}, got {_shape(gt_bboxes)}")
    M = gt_bboxes.shape[1]
    if gt_labels.shape not in ((B, M), (B, M, 1)):
        raise ValueError(f"gt_labels must be (B, M) or (B, M, 1) = {(B, M)}, got {_shape(gt_labels)}")
    if mask_gt.shape not in ((B, M), (B, M, 1)):
        raise ValueError(f"mask_gt must be (B, M) or (B, M, 1) = {(B, M)}, got {_shape(mask_gt)}")
    for n, t in zip(names[:3] + names[4:5], (pd_scores, pd_bboxes, anc_points, gt_bboxes)):
        _float(n, t)
    if gt_labels.dtype == torch.bool or gt_labels.is_complex():
        raise ValueError(f"gt_labels must be an integer or float tensor, got {gt_labels.dtype}")
    dev = pd_scores.device
    for n, t in zip(names[1:], ts[1:]):
        if t.device != dev:
            raise ValueError(f"{n} is on {t.device} but {names[0]} is on {dev}: all inputs must share one device")
    labels = gt_labels.reshape(B, M)
    mask = mask_gt.reshape(B, M)
    mask = mask.bool() if mask.dtype != torch.bool else mask
    if not check_values or _values_ok(labels, mask, gt_bboxes, anc_points, C):
        return labels.long(), mask
    # Something is wrong: find it and name it (several reads of device data; the error path only).
    if labels.is_floating_point():
        if not bool(torch.isfinite(labels[mask]).all()):
            raise ValueError("gt_labels must be finite for real ground truths")
    labels = labels.long()
    real = labels[mask]
    if real.numel():
        lo, hi = int(real.min()), int(real.max())
        if lo < 0 or hi >= C:
            bad = lo if lo < 0 else hi
            raise ValueError(f"gt_labels must be in [0, C={C}) for real ground truths, got {bad}")
        boxes = gt_bboxes[mask]
        if not bool(torch.isfinite(boxes).all()):
            raise ValueError(
                f"gt_bboxes must be finite for real ground truths, got {boxes[~torch.isfinite(boxes).all(1)][0].tolist()}"
            )
        inv = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if bool(inv.any()):
            raise ValueError(f"gt_bboxes must be xyxy with x2 >= x1 and y2 >= y1, got {boxes[inv][0].tolist()}")
    if not bool(torch.isfinite(anc_points).all()):
        raise ValueError("anc_points must be finite")
    return labels, mask


def _values_ok(labels, mask, gt_bboxes, anc_points, C) -> bool:
    """Every data check of check_inputs as one device reduction read once (a single sync on
    CUDA, instead of one per check): finite labels in [0, C) after truncation, finite boxes with
    x2 >= x1 and y2 >= y1 (real ground truths only), finite anchors."""
    fine = torch.isfinite(labels) if labels.is_floating_point() else torch.ones_like(mask)
    lab = torch.where(fine, labels, 0).long()
    fin = torch.isfinite(gt_bboxes).all(-1)
    upright = (gt_bboxes[..., 2] >= gt_bboxes[..., 0]) & (gt_bboxes[..., 3] >= gt_bboxes[..., 1])
    good = fine & (lab >= 0) & (lab < C) & fin & upright
    return bool((good | ~mask).all() & torch.isfinite(anc_points).all())


def check_dual_inputs(
    o2m_scores,
    o2m_bboxes,
    o2o_scores,
    o2o_bboxes,
    anc_points,
    gt_labels,
    gt_bboxes,
    mask_gt,
    heads,
    check_values=True,
):
    """check_inputs for both heads (ground-truth values once) and both heads' settings against
    the anchors; returns (gt_labels (B, M) int64, mask_gt (B, M) bool)."""
    labels, mask = check_inputs(
        o2m_scores, o2m_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, prefix="o2m_", check_values=check_values
    )
    check_inputs(o2o_scores, o2o_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, prefix="o2o_", check_values=False)
    if o2o_scores.shape != o2m_scores.shape:
        raise ValueError(f"o2o_scores must match o2m_scores {tuple(o2m_scores.shape)}, got {tuple(o2o_scores.shape)}")
    for h in heads:
        h.check_anchors(o2m_scores.shape[1])
    return labels, mask
