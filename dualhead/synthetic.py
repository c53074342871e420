"""Synthetic assignment inputs: the contract §5 workloads and the parity-test distributions.

Predictions are built so that the metric is informative (boxes near the ground truths they
overlap, scores spread over (0, 1)), as in a detector a few epochs into training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dualhead.anchors import STRIDES, anchor_points


@dataclass
class Batch:
    pd_scores: torch.Tensor  # (B, N, C)
    pd_bboxes: torch.Tensor  # (B, N, 4)
    anc_points: torch.Tensor  # (N, 2)
    gt_labels: torch.Tensor  # (B, M, 1) float, as ultralytics builds it
    gt_bboxes: torch.Tensor  # (B, M, 4)
    mask_gt: torch.Tensor  # (B, M, 1) float

    def args(self):
        return self.pd_scores, self.pd_bboxes, self.anc_points, self.gt_labels, self.gt_bboxes, self.mask_gt

    def second_head(self, seed: int, same: bool = False):
        """Another head's predictions for the same images (o2o), correlated with this one's."""
        if same:
            return self.pd_scores.clone(), self.pd_bboxes.clone()
        g = torch.Generator().manual_seed(seed)
        s = self.pd_scores.float()
        noise = lambda shape: torch.randn(shape, generator=g).to(s.device)  # noqa: E731 (CPU generator)
        logit = torch.logit(s.clamp(1e-6, 1 - 1e-6)) + 0.5 * noise(s.shape)
        scale = (self.pd_bboxes[..., 2:] - self.pd_bboxes[..., :2]).float().abs().repeat(1, 1, 2) + 1
        boxes = self.pd_bboxes.float() + 0.05 * scale * noise(self.pd_bboxes.shape)
        boxes = torch.cat(
            (torch.minimum(boxes[..., :2], boxes[..., 2:]), torch.maximum(boxes[..., :2], boxes[..., 2:])), -1
        )
        return torch.sigmoid(logit).to(self.pd_scores.dtype), boxes.to(self.pd_bboxes.dtype)


def _sizes(kind: str, n: int, imgsz: int, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, 2, generator=g)
    if kind == "tiny":  # 2-20 px
        return 2 + 18 * u
    if kind == "crowded":  # 4-40 px (xView-like)
        return 4 + 36 * u
    # COCO-like: log-uniform 8 px .. 0.6 image, aspect jitter
    lo, hi = torch.log(torch.tensor(8.0)), torch.log(torch.tensor(0.6 * imgsz))
    side = torch.exp(lo + (hi - lo) * u[:, :1])
    aspect = torch.exp((torch.rand(n, 1, generator=g) - 0.5) * 1.2)
    return torch.cat((side * aspect, side / aspect), 1)


def make_batch(B=4, imgsz=640, C=80, n_gt=(1, 30), kind="coco", seed=0, dtype=torch.float32, device="cpu") -> Batch:
    """A batch with n_gt[0]..n_gt[1] real ground truths per image, padded to the batch maximum.

    kind: 'coco' (COCO-like sizes), 'tiny' (2-20 px), 'crowded' (4-40 px, clustered, hundreds
    of overlapping boxes per image)."""
    g = torch.Generator().manual_seed(seed)
    anc = anchor_points(imgsz)
    N = anc.shape[0]
    counts = torch.randint(n_gt[0], n_gt[1] + 1, (B,), generator=g)
    M = int(counts.max()) if B else 0
    gt_bboxes = torch.zeros(B, M, 4)
    gt_labels = torch.zeros(B, M, 1)
    mask = torch.zeros(B, M, 1)
    for b in range(B):
        n = int(counts[b])
        wh = _sizes(kind, n, imgsz, g)
        if kind == "crowded":  # clusters of objects, as in aerial imagery
            centres = torch.rand(max(1, n // 50), 2, generator=g) * imgsz
            pick = torch.randint(0, centres.shape[0], (n,), generator=g)
            cxy = centres[pick] + torch.randn(n, 2, generator=g) * 40
        else:
            cxy = torch.rand(n, 2, generator=g) * imgsz
        cxy = cxy.clamp(0, imgsz)
        box = torch.cat((cxy - wh / 2, cxy + wh / 2), 1).clamp(0, imgsz)
        gt_bboxes[b, :n] = box
        gt_labels[b, :n, 0] = torch.randint(0, C, (n,), generator=g).float()
        mask[b, :n] = 1
    # Predictions: each anchor predicts a box around itself whose size follows the nearest-in-
    # scale ground truth of a random real box, jittered; scores spread over (0, 1).
    stride = torch.cat([torch.full(((imgsz // s) ** 2,), float(s)) for s in STRIDES])
    pwh = stride[None, :, None] * torch.exp(torch.randn(B, N, 2, generator=g) * 0.7 + 1.0)
    pc = anc[None] + torch.randn(B, N, 2, generator=g) * stride[None, :, None] * 0.5
    pd_bboxes = torch.cat((pc - pwh / 2, pc + pwh / 2), -1)
    pd_scores = torch.sigmoid(torch.randn(B, N, C, generator=g) * 1.5 - 1.0)
    return Batch(
        pd_scores.to(dtype).to(device),
        pd_bboxes.to(dtype).to(device),
        anc.to(device),
        gt_labels.to(device),
        gt_bboxes.to(device),
        mask.to(device),
    )


# contract §5 workloads: (B, imgsz, C, ground truths per image, kind)
WORKLOADS = {
    "W1": dict(B=16, imgsz=640, C=80, n_gt=(1, 50), kind="coco"),
    "W2": dict(B=16, imgsz=640, C=365, n_gt=(300, 300), kind="coco"),
    "W3": dict(B=8, imgsz=640, C=60, n_gt=(1000, 2000), kind="crowded"),
    "W4": dict(B=4, imgsz=1280, C=80, n_gt=(100, 100), kind="coco"),
}
