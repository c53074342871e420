"""Fake (meta) kernels for torch.ops.dualhead.*: shapes and dtypes only, so torch.compile and
FakeTensor tracing go through the ops. Same shape and device conditions as the C++ checks."""

from __future__ import annotations

import torch


def _check_boxes(t, name):
    torch._check(t.dim() == 2 and t.shape[1] == 4, lambda: f"{name} must be (N, 4), got {tuple(t.shape)}")


def register() -> None:
    @torch.library.register_fake("dualhead::box_iou")
    def _box_iou(boxes1, boxes2, kind):
        _check_boxes(boxes1, "boxes1")
        _check_boxes(boxes2, "boxes2")
        torch._check(0 <= kind <= 3, lambda: f"kind must be 0..3, got {kind}")
        return boxes1.new_empty((boxes1.shape[0], boxes2.shape[0]), dtype=torch.float32)

    @torch.library.register_fake("dualhead::assign")
    def _assign(
        scores,
        bboxes,
        scores2,
        bboxes2,
        anc_points,
        gt_labels,
        gt_bboxes,
        mask_gt,
        settings,
        with_stats,
    ):
        torch._check(scores.dim() == 3, lambda: f"pd_scores must be (B, N, C), got {tuple(scores.shape)}")
        torch._check(
            bboxes.shape == (*scores.shape[:2], 4), lambda: f"pd_bboxes must be (B, N, 4), got {tuple(bboxes.shape)}"
        )
        torch._check(
            gt_bboxes.dim() == 3 and gt_bboxes.shape[2] == 4,
            lambda: f"gt_bboxes must be (B, M, 4), got {tuple(gt_bboxes.shape)}",
        )
        B, N, _ = scores.shape
        torch._check(
            anc_points.shape == (N, 2), lambda: f"anc_points must be (N, 2) = ({N}, 2), got {tuple(anc_points.shape)}"
        )
        torch._check(
            gt_labels.shape == gt_bboxes.shape[:2] and mask_gt.shape == gt_bboxes.shape[:2],
            lambda: f"gt_labels and mask_gt must be (B, M) = {tuple(gt_bboxes.shape[:2])}",
        )
        for t in (bboxes, scores2, bboxes2, anc_points, gt_labels, gt_bboxes, mask_gt):
            # a meta tensor among real ones dispatches here, not to the backend that checks devices
            torch._check(
                t is None or t.device == scores.device,
                lambda t=t: f"all inputs must be on {scores.device}, got one on {t.device}",
            )
        H = 1 if scores2 is None else 2
        S = gt_bboxes.shape[1] if (with_stats and H == 2) else 0
        f = bboxes.new_empty
        return (
            f((H, B, N), dtype=torch.bool),
            f((H, B, N), dtype=torch.long),
            f((H, B, N), dtype=torch.float32),
            f((B, S), dtype=torch.long),
            f((B, S), dtype=torch.long),
            f((B, S), dtype=torch.float32),
        )

    @torch.library.register_fake("dualhead::to_dense")
    def _to_dense(labels, scores, num_classes):
        torch._check(num_classes >= 1, lambda: f"num_classes must be >= 1, got {num_classes}")
        return scores.new_empty((*labels.shape, num_classes), dtype=torch.float32)

    @torch.library.register_fake("dualhead::to_dense_out")
    def _to_dense_out(labels, scores, out):
        return None

    @torch.library.register_fake("dualhead::anchor_grid")
    def _anchor_grid(anc_points):
        L = torch.library.get_ctx().new_dynamic_size()
        return anc_points.new_empty((L, 4), dtype=torch.float64)
