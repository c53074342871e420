"""Functional API over torch.ops.dualhead.* (contract §2), with the pure-torch reference as the
fallback when the extension is not built (one warning per process).

Shapes: B images, N anchors, C classes, M ground-truth slots. Boxes are xyxy in pixels.
"""

from __future__ import annotations

import torch

from dualhead import _ext, reference
from dualhead.assignment import Assignment, ConsistencyStats, DualAssignment, check_dense_out, dense_torch
from dualhead.checks import check_dual_inputs, check_inputs
from dualhead.conventions import IOU_KINDS, Convention, op_settings, resolve
from dualhead.reference.assign import empty_assignment
from dualhead.settings import O2M, O2O, HeadSettings, heads_or_options, single_settings

__all__ = ["box_iou", "assign", "dual_assign", "to_dense", "check_errors"]

# The op library the functions below call (the tests of the CUDA kernels on CPU swap in
# torch.ops.dualhead_emu, tests/cuda_emu.py).
_lib = torch.ops.dualhead


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str = "ciou") -> torch.Tensor:
    """Pairwise overlaps (N, 4) x (M, 4) -> (N, M) fp32; kind in iou, giou, diou, ciou
    (ultralytics bbox_iou, eps 1e-7)."""
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {sorted(IOU_KINDS)}, got {kind!r}")
    if isinstance(boxes2, torch.Tensor) and _use_kernel("box_iou", boxes1):
        return _lib.box_iou(boxes1, boxes2, IOU_KINDS[kind])
    return reference.box_iou(boxes1, boxes2, kind)


def _use_kernel(op: str, t) -> bool:
    """Whether op runs on the compiled kernel for tensor t's device (a non-tensor goes to the
    reference, whose checks then name the bad argument)."""
    if not isinstance(t, torch.Tensor):
        return False
    if _ext.reference_forced():
        return False  # DUALHEAD_REFERENCE=1: debugging against the oracle
    key = _dispatch_key(t)
    if _ext.has_kernel(op, key):
        return True
    _ext.warn_fallback(op, key)
    return False


def _read_layout() -> list[str] | None:
    """The names of torch.ops.dualhead.assign's settings list, in order (csrc/assign_settings.h),
    read once at import (outside any torch.compile trace); None without the extension."""
    if not (_ext.available() and _ext.has_op("assign_settings")):
        return None
    return [n for n in torch.ops.dualhead.assign_settings().split(",") if n]


_LAYOUT = _read_layout()


def _settings_layout() -> list[str]:
    if _LAYOUT is None:
        raise RuntimeError("the dualhead extension has no assign_settings op: rebuild it (pip install -e .)")
    return _LAYOUT


def _run(preds, heads, anc_points, labels, gt_bboxes, mask, convention: Convention, with_stats):
    """torch.ops.dualhead.assign on inputs of checked shapes, dtypes and devices: preds [(scores,
    boxes)] and heads [HeadSettings] of one or two heads, the call's Convention -> ([Assignment per
    head], stats or None). The value checks (labels in range, finite upright boxes, finite anchors)
    are the kernel's: on CPU before any work, on CUDA on the device (see check_errors); their
    errors come back tagged and are raised here as ValueError."""
    (s1, b1), (s2, b2) = preds[0], (preds[1] if len(preds) > 1 else (None, None))
    settings = op_settings(heads, convention, _settings_layout())
    args = (s1, b1, s2, b2, anc_points, labels, gt_bboxes, mask, settings, with_stats)
    if torch.compiler.is_compiling():  # traced: errors stay the kernel's RuntimeError
        fg, gt, t, pick, rank, gap = _lib.assign(*args)
    else:
        with _ext.value_errors():
            fg, gt, t, pick, rank, gap = _lib.assign(*args)
    out = [
        Assignment(fg[h], gt[h], scores=t[h], gt_labels=labels, gt_bboxes=gt_bboxes, dense=to_dense)
        for h in range(len(preds))
    ]
    return out, (ConsistencyStats(pick, rank, gap, mask) if with_stats else None)


def assign(
    pd_scores,
    pd_bboxes,
    anc_points,
    gt_labels,
    gt_bboxes,
    mask_gt,
    *,
    topk=O2M.topk,
    topk2=None,
    alpha=O2M.alpha,
    beta=O2M.beta,
    min_side=16.0,
    conflict="all",
    iou_type="ciou",
    eps=1e-9,
    convention: Convention | None = None,
    head: HeadSettings | None = None,
) -> Assignment:
    """Single-head task-aligned assignment (contract §1), compact output.

    pd_scores (B, N, C) probabilities, pd_bboxes (B, N, 4), anc_points (N, 2), gt_labels (B, M[, 1]),
    gt_bboxes (B, M, 4), mask_gt (B, M[, 1]); boxes xyxy in pixels. convention: another codebase's
    rules (dualhead.Convention), instead of the shorthand min_side / conflict / iou_type / eps
    (ultralytics 8.4.128+). head: the head's HeadSettings instead of topk / topk2 / alpha / beta
    (dualhead.settings), passed on as it is. See dualhead.reference.assign."""
    conv = resolve(convention, min_side=min_side, conflict=conflict, iou_type=iou_type, eps=eps)
    head = single_settings(head, topk, topk2, alpha, beta)
    if not _use_kernel("assign", pd_scores):
        return reference.assign(
            pd_scores,
            pd_bboxes,
            anc_points,
            gt_labels,
            gt_bboxes,
            mask_gt,
            convention=conv,
            head=head,
        )
    labels, mask = check_inputs(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, check_values=False)
    head.check_anchors(pd_scores.shape[1])
    if mask.shape[1] == 0:  # no ground-truth slots: labels = C (ultralytics)
        return empty_assignment(*pd_scores.shape, pd_scores.device)
    out, _ = _run([(pd_scores, pd_bboxes)], [head], anc_points, labels, gt_bboxes, mask, conv, False)
    return out[0]


def dual_assign(
    o2m_scores,
    o2m_bboxes,
    o2o_scores,
    o2o_bboxes,
    anc_points,
    gt_labels,
    gt_bboxes,
    mask_gt,
    *,
    o2m_topk=O2M.topk,
    o2o_topk=O2O.topk,
    o2o_topk2=None,
    alpha=O2M.alpha,
    beta=O2M.beta,
    r=1.0,
    min_side=16.0,
    conflict="all",
    iou_type="ciou",
    eps=1e-9,
    o2o_alpha=None,
    o2o_beta=None,
    stats=True,
    heads=None,
    convention: Convention | None = None,
) -> DualAssignment:
    """Both heads in one call sharing the candidate search: o2m (alpha, beta, o2m_topk) and o2o
    (r*alpha, r*beta, o2o_topk, o2o_topk2), each with its own predictions; plus the consistency
    statistics (stats=False skips them: DualAssignment.stats is then None). o2o_alpha / o2o_beta
    override r*alpha / r*beta (an inconsistent o2o metric, for the metric study). heads: the
    (o2m, o2o) HeadSettings instead of those options (dualhead.settings). convention: another
    codebase's rules instead of min_side / conflict / iou_type / eps (dualhead.Convention)."""
    conv = resolve(convention, min_side=min_side, conflict=conflict, iou_type=iou_type, eps=eps)
    heads = heads_or_options(heads, o2m_topk, o2o_topk, o2o_topk2, alpha, beta, r, o2o_alpha, o2o_beta)
    kernel = _use_kernel("assign", o2m_scores)
    if kernel:
        labels, mask = check_dual_inputs(
            o2m_scores,
            o2m_bboxes,
            o2o_scores,
            o2o_bboxes,
            anc_points,
            gt_labels,
            gt_bboxes,
            mask_gt,
            heads,
            check_values=False,
        )
    if not kernel or mask.shape[1] == 0:  # no extension, or no ground-truth slots (labels = C)
        return reference.dual_assign(
            o2m_scores,
            o2m_bboxes,
            o2o_scores,
            o2o_bboxes,
            anc_points,
            gt_labels,
            gt_bboxes,
            mask_gt,
            heads=heads,
            convention=conv,
        )
    if o2o_scores.dtype != o2m_scores.dtype:
        o2o_scores = o2o_scores.to(o2m_scores.dtype)
    (o2m, o2o), st = _run(
        [(o2m_scores, o2m_bboxes), (o2o_scores, o2o_bboxes)],
        list(heads),
        anc_points,
        labels,
        gt_bboxes,
        mask,
        conv,
        stats,
    )
    return DualAssignment(o2m, o2o, st)


def to_dense(a: Assignment, num_classes: int, out: torch.Tensor | None = None):
    """Compact Assignment -> ultralytics 5-tuple (labels, bboxes, scores (B, N, C), fg_mask, gt_idx).

    out: an fp32 (B, N, C) buffer to write the scores into (reused across steps it avoids the
    first-touch cost of fresh pages); it is returned as the scores element."""
    check_dense_out(a, num_classes, out)
    if not _use_kernel("to_dense", a.scores):
        return dense_torch(a, num_classes, out)
    if out is None:
        scores = _lib.to_dense(a.labels, a.scores, num_classes)
    else:
        _lib.to_dense_out(a.labels, a.scores, out)
        scores = out
    return a.labels, a.bboxes, scores, a.fg_mask, a.gt_idx


def check_errors(device=None) -> None:
    """Raises the ValueError that a CUDA device-side input check recorded, if any (contract §4).

    On CUDA the input values (labels in [0, C), finite upright ground-truth boxes, finite
    anchors) are checked on the device, so a call never waits for the GPU: a bad row is left out
    of that call's assignment and its error is raised by the next assign call on the device, or
    here (after the GPU has run the call: e.g. after torch.cuda.synchronize() or a loss.item()).
    DUALHEAD_SYNC_CHECKS=1 raises within the call instead, at the cost of a sync per call.

    device: None checks every CUDA device; "cuda" the current one; "cuda:1" (or 1) that one.
    A no-op on CPU, where the checks run before any work."""
    for d in _error_devices(device):
        msg = _lib.take_cuda_error(d)
        if msg:
            raise ValueError(f"{msg} (found on cuda:{d} by the device-side check of an earlier dualhead assign call)")


def _error_devices(device) -> list[int]:
    """The CUDA devices whose device-check records check_errors reads."""
    if not (_ext.available() and torch.cuda.is_available() and _ext.has_op("take_cuda_error")):
        return []
    if device is None:
        return list(range(torch.cuda.device_count()))
    d = torch.device(device)
    if d.type != "cuda":
        return []
    return [torch.cuda.current_device() if d.index is None else d.index]


def _dispatch_key(t: torch.Tensor) -> str:
    return "CUDA" if t.is_cuda else "CPU"
