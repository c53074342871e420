"""The detection loss from compact targets (contract §1 'Loss'; ultralytics v8DetectionLoss semantics).

Per head: BCE-with-logits over all anchors and classes against the soft targets, 1 - CIoU and DFL
over the positives weighted by their target score, each divided by max(sum of targets, 1); gains
box 7.5, cls 0.5, dfl 1.5. The dense (B, N, C) target tensor is never built:
    sum_{a,c} BCE(x_ac, t_ac) = sum_{a,c} softplus(x_ac) - sum_{positives a} t_a * x_{a, label_a}
since t is zero except on each positive's own class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dualhead import ops
from dualhead.assigners import DualAssigner
from dualhead.assignment import Assignment
from dualhead.detector.nn.head import decode_dist
from dualhead.iou import iou_aligned
from dualhead.settings import O2M, O2O_E2E, HeadSettings


@dataclass(frozen=True)
class LossGains:
    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5


def dfl_loss(dist: torch.Tensor, target: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Distribution focal loss (ultralytics DFLoss): dist (..., 4, reg_max) logits, target (..., 4)
    distances in grid units -> (...), the mean over the four sides. The target is clamped to
    [0, reg_max - 1 - 0.01] so its right bin exists; it is split between the two bins around it."""
    target = target.clamp(0, reg_max - 1 - 0.01)
    tl = target.long()
    wl = (tl + 1) - target
    logp = F.log_softmax(dist.float(), dim=-1)
    lo = logp.gather(-1, tl.unsqueeze(-1)).squeeze(-1)
    hi = logp.gather(-1, (tl + 1).unsqueeze(-1)).squeeze(-1)
    return -(lo * wl + hi * (1 - wl)).mean(-1)


def gather_positives(x: torch.Tensor) -> bool:
    """Whether head_loss may gather the positives: on CPU in eager mode. On CUDA the positives'
    count would be a host sync, and torch.compile(fullgraph=True) needs static shapes."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def head_loss(
    dist: torch.Tensor,
    logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    anchors: torch.Tensor,
    strides: torch.Tensor,
    a: Assignment,
    reg_max: int = 16,
    gains: LossGains = LossGains(),
):
    """One head's loss vector (box, cls, dfl), gains applied, not multiplied by the batch size.

    dist (B, N, 4*reg_max) and logits (B, N, C): raw head outputs; pred_boxes (B, N, 4): decoded
    xyxy in grid units; anchors (N, 2) grid units; strides (N, 1); a: the head's Assignment
    (boxes in pixels)."""
    B, N, C = logits.shape
    tss = a.scores.sum().clamp(min=1)  # target_scores_sum, on the device: no host sync
    # The terms are computed over all anchors and masked rather than gathered at the positives:
    # no data-dependent shapes (torch.compile(fullgraph=True) traces it, no host sync), and the
    # extra element-wise work is small next to the network. t is 0 off the positives. The one
    # exception is the DFL term in eager mode on CPU, below.
    fg, t = a.fg_mask, a.scores
    # classification: softplus over everything minus the positives' t * logit on their class
    lab = a.labels.clamp(0, C - 1).unsqueeze(-1)
    x_pos = logits.gather(-1, lab).squeeze(-1).float()
    cls = (F.softplus(logits.float()).sum() - (t * x_pos).sum()) / tss
    # boxes: CIoU in grid units against the target scaled by the anchor's stride
    target = a.bboxes / strides
    iou = iou_aligned(pred_boxes.float(), target, "ciou")
    box = torch.where(fg, (1.0 - iou) * t, 0.0).sum() / tss
    ltrb = torch.cat((anchors - target[..., :2], target[..., 2:] - anchors), -1)
    bins = dist.view(B, N, 4, reg_max)
    if gather_positives(dist):
        # Eager CPU: the DFL of the positives only (a small share of the anchors), not a
        # log-softmax over every anchor's bins and its backward. Its terms are
        # row-wise basic arithmetic, so each positive's value and every gradient are bitwise the
        # masked form's (tests/test_loss.py); only the order of the forward sum differs.
        pos = fg.nonzero(as_tuple=True)
        dfl = (dfl_loss(bins[pos], ltrb[pos], reg_max) * t[pos]).sum() / tss
    else:
        dfl = torch.where(fg, dfl_loss(bins, ltrb, reg_max) * t, 0.0).sum() / tss
    return torch.stack((box * gains.box, cls * gains.cls, dfl * gains.dfl))


def o2m_weight(epoch: int, epochs: int, start: float = 0.8, final: float = 0.1) -> float:
    """ultralytics E2ELoss schedule: the o2m weight goes linearly from 0.8 (epoch 0) to 0.1 (last
    epoch); the o2o weight is 1 minus it."""
    return max(1 - epoch / max(epochs - 1, 1), 0) * (start - final) + final


class DetectionLoss:
    """The training criterion: assigns both heads (one dualhead call), then sums their losses.

    branches: the model's branches. Dual: DualAssigner with the heads' HeadSettings (o2m, o2o:
    the trainer's, dualhead.settings O2M and O2O_E2E). weighting: "equal" (YOLOv10, 1:1) or
    "schedule" (ultralytics, o2m 0.8 -> 0.1 over the epochs; call set_epoch). A single branch is
    assigned alone with its own head's settings.
    """

    def __init__(
        self,
        nc: int,
        branches=("o2m", "o2o"),
        strides=(8, 16, 32),
        reg_max: int = 16,
        o2m: HeadSettings = O2M,
        o2o: HeadSettings = O2O_E2E,
        weighting: str = "equal",
        epochs: int = 1,
        gains: LossGains = LossGains(),
        o2o_gain: float = 1.0,
    ):
        if weighting not in ("equal", "schedule"):
            raise ValueError(f"weighting must be 'equal' or 'schedule', got {weighting!r}")
        self.nc, self.branches, self.reg_max, self.gains = nc, tuple(branches), reg_max, gains
        if not (isinstance(o2o_gain, (int, float)) and o2o_gain > 0):
            raise ValueError(f"o2o_gain must be a number > 0, got {o2o_gain!r}")
        self.weighting, self.epochs, self.o2o_gain = weighting, epochs, float(o2o_gain)
        self.dual = DualAssigner(nc, stride=strides, heads=(o2m, o2o))
        self.weights = {"o2m": 1.0, "o2o": 1.0}
        self.set_epoch(0)

    def set_epoch(self, epoch: int):
        if self.weighting == "schedule" and len(self.branches) == 2:
            w = o2m_weight(epoch, self.epochs)
            self.weights = {"o2m": w, "o2o": 1.0 - w}

    def _single(self, branch, scores, boxes, anc_px, gt_labels, gt_bboxes, mask):
        d = self.dual
        head = d.o2m if branch == "o2m" else d.o2o
        return ops.assign(scores, boxes, anc_px, gt_labels, gt_bboxes, mask, head=head, min_side=d.min_side)

    def __call__(
        self,
        out: dict,
        anchors: torch.Tensor,
        strides: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor,
    ):
        """out: {branch: (dist, logits)} from the head; anchors (N, 2) grid units, strides (N, 1);
        gt_labels (B, M), gt_bboxes (B, M, 4) xyxy pixels, mask_gt (B, M).
        Returns (loss to backpropagate (scalar, x batch size as ultralytics), {name: float tensor}
        of detached items, ConsistencyStats or None)."""
        B = gt_bboxes.shape[0]
        anc_px = anchors * strides
        pred = {b: decode_dist(d, anchors, self.reg_max) for b, (d, _) in out.items()}
        with torch.no_grad():
            sc = {b: lg.detach().sigmoid() for b, (_, lg) in out.items()}
            px = {b: p.detach() * strides for b, p in pred.items()}
            if len(out) == 2:
                res = self.dual(sc["o2m"], px["o2m"], sc["o2o"], px["o2o"], anc_px, gt_labels, gt_bboxes, mask_gt)
                assigned, stats = {"o2m": res.o2m, "o2o": res.o2o}, res.stats
            else:
                (b,) = out
                assigned = {b: self._single(b, sc[b], px[b], anc_px, gt_labels, gt_bboxes, mask_gt)}
                stats = None
        total, items = 0.0, {}
        for b, (dist, logits) in out.items():
            vec = head_loss(dist, logits, pred[b], anchors, strides, assigned[b], self.reg_max, self.gains)
            w = self.weights[b] * (self.o2o_gain if b == "o2o" and len(out) == 2 else 1.0)
            total = total + w * vec.sum()
            for name, v in zip(("box", "cls", "dfl"), vec.detach()):
                items[f"{b}_{name}"] = v
        return total * B, items, stats
