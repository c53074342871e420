"""Drop-in for mmdetection's TaskAlignedAssigner (TOOD), computed by dualhead's kernels with
TOOD's rules (`dualhead.Convention.tood()`): each object's top-k over *all* anchors by
p^alpha * IoU^beta, then those whose prior centre is more than 0.01 px inside the box and whose
metric is positive; an anchor claimed twice goes to the claimant of largest IoU.

    TaskAlignedAssigner(topk=13).assign(pred_instances, gt_instances, alpha=1, beta=6)

as mmdet calls it (one image; pred_instances with priors (N, 4), bboxes (N, 4) decoded xyxy,
scores (N, C); gt_instances with bboxes (M, 4), labels (M,)) returns an AssignResult (mmdet's
class when mmdet is importable, else one with the same fields: num_gts, gt_inds (1-based, 0 =
background), max_overlaps (IoU of the assigned pair, -1e8 for background), labels (-1 for
background), assign_metrics). `assign_batch` does a whole padded batch in one kernel call.
When mmdet is importable, `register()` (run on import) adds the class to its TASK_UTILS registry
as "DualheadTaskAlignedAssigner".

The IoU mmdet's BboxOverlaps2D computes (eps 1e-6 on the union) is used for the returned
max_overlaps and assign_metrics; the kernel picks with its own IoU, which agrees to ~1e-7.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from dualhead import ops
from dualhead.conventions import Convention
from dualhead.integrations._registry import register_task_util

INF = 100000000  # mmdet's background max_overlaps is -INF


def _iou_aligned(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Plain IoU of aligned xyxy boxes, the union floored at eps (mmdet's bbox_overlaps mode iou)."""
    area1 = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area2 = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.max(a[..., :2], b[..., :2])
    rb = torch.min(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = (area1 + area2 - overlap).clamp(min=eps)
    return overlap / union


def _assign_result(num_gts, gt_inds, max_overlaps, labels, metrics):
    try:
        from mmdet.models.task_modules.assigners import AssignResult  # optional: mmdet's users have it
    except ImportError:
        r = SimpleNamespace(num_gts=num_gts, gt_inds=gt_inds, max_overlaps=max_overlaps, labels=labels)
    else:
        r = AssignResult(num_gts, gt_inds, max_overlaps, labels=labels)
    r.assign_metrics = metrics
    return r


class TaskAlignedAssigner:
    """mmdet's constructor: topk; iou_calculator must be BboxOverlaps2D (the only one TOOD uses)."""

    def __init__(self, topk: int, iou_calculator: dict | None = None):
        if not (isinstance(topk, int) and topk >= 1):
            raise ValueError(f"topk must be an int >= 1, got {topk!r}")
        kind = (iou_calculator or {"type": "BboxOverlaps2D"}).get("type")
        if kind not in ("BboxOverlaps2D", "mmdet.BboxOverlaps2D"):
            raise ValueError(f"iou_calculator must be BboxOverlaps2D (dualhead computes plain IoU), got {kind!r}")
        self.topk = topk
        self.convention = Convention.tood()

    def assign_batch(self, priors, bboxes, scores, gt_bboxes, gt_labels, mask_gt, alpha=1, beta=6):
        """A padded batch: priors (N, 4), bboxes (B, N, 4) decoded xyxy, scores (B, N, C),
        gt_bboxes (B, M, 4), gt_labels (B, M), mask_gt (B, M) -> (gt_inds (B, N) 1-based,
        max_overlaps (B, N), labels (B, N), assign_metrics (B, N))."""
        if not (isinstance(priors, torch.Tensor) and priors.dim() == 2 and priors.shape[1] == 4):
            shape = tuple(priors.shape) if isinstance(priors, torch.Tensor) else type(priors).__name__
            raise ValueError(f"priors must be (num_priors, 4), got {shape}")
        centres = torch.stack(((priors[:, 0] + priors[:, 2]) / 2.0, (priors[:, 1] + priors[:, 3]) / 2.0), -1)
        B, N = bboxes.shape[:2]
        a = ops.assign(
            scores.detach(),
            bboxes.detach(),
            centres,
            gt_labels,
            gt_bboxes,
            mask_gt,
            topk=min(self.topk, N),
            alpha=alpha,
            beta=beta,
            convention=self.convention,
        )
        fg, gi = a.fg_mask, a.gt_idx
        gt_inds = torch.where(fg, gi + 1, torch.zeros_like(gi))
        if gt_bboxes.shape[1] == 0:  # no ground-truth slots in the batch: every prior is background
            zeros = torch.zeros(B, N, dtype=torch.float32, device=bboxes.device)
            return gt_inds, torch.full_like(zeros, -INF), torch.full_like(gi, -1), zeros
        bi = torch.arange(B, device=gi.device)[:, None].expand_as(gi)
        tb = gt_bboxes[bi, gi].float()
        iou = _iou_aligned(bboxes.detach().float(), tb)
        lab = gt_labels.reshape(B, -1).long()[bi, gi]
        p = scores.detach().float().gather(2, lab.clamp(min=0)[..., None]).squeeze(-1)
        metrics = torch.where(fg, p**alpha * iou**beta, torch.zeros_like(iou))
        max_overlaps = torch.where(fg, iou, torch.full_like(iou, -INF))
        labels = torch.where(fg, lab, torch.full_like(lab, -1))
        return gt_inds, max_overlaps, labels, metrics

    def assign(self, pred_instances, gt_instances, gt_instances_ignore=None, alpha=1, beta=6):
        """One image, as mmdet's TOODHead calls it -> AssignResult (+ assign_metrics)."""
        priors = pred_instances.priors[:, :4]
        gt_bboxes, gt_labels = gt_instances.bboxes, gt_instances.labels
        num_gt, n = gt_bboxes.size(0), priors.size(0)
        if num_gt == 0 or n == 0:
            z = priors.new_zeros((n,))
            return _assign_result(
                num_gt, priors.new_zeros((n,), dtype=torch.long), z, priors.new_full((n,), -1, dtype=torch.long), z
            )
        mask = torch.ones(1, num_gt, dtype=torch.bool, device=gt_bboxes.device)
        gi, mo, lab, met = self.assign_batch(
            priors,
            pred_instances.bboxes[None],
            pred_instances.scores[None],
            gt_bboxes[None],
            gt_labels[None],
            mask,
            alpha,
            beta,
        )
        return _assign_result(num_gt, gi[0], mo[0], lab[0], met[0])


def register() -> bool:
    """Adds the class to mmdet's TASK_UTILS registry (as DualheadTaskAlignedAssigner) when mmdet is
    importable; returns whether it did."""
    return register_task_util("mmdet.registry", "DualheadTaskAlignedAssigner", TaskAlignedAssigner)


register()
