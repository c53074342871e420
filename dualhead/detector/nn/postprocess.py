"""Detections from decoded head outputs: NMS-free top-k (o2o) and classic NMS (o2m).

Both return one (K, 6) tensor per image: x1, y1, x2, y2 (pixels), score, class.
"""

from __future__ import annotations

import torch


def topk_all(boxes: torch.Tensor, scores: torch.Tensor, max_det: int = 300, one_class: bool = False) -> torch.Tensor:
    """NMS-free selection (ultralytics v10 postprocess, contract §1 'Inference') as one tensor
    (B, k, 6) x1 y1 x2 y2 score class, k = min(max_det, N), best first and no threshold: the k
    anchors with the best class score, then the k best of their (anchor, class) scores -- so one
    anchor may appear with several classes. one_class: each of those anchors with its best class
    only. boxes (B, N, 4), scores (B, N, C) probabilities. Tensor operations only, with shapes
    fixed by N and C: the exported graph (dualhead.detector.export) runs this very function."""
    if max_det < 1:
        raise ValueError(f"max_det must be >= 1, got {max_det!r}")
    C = scores.shape[2]
    k = min(max_det, scores.shape[1])
    best, idx = scores.amax(-1).topk(k, dim=1)
    if one_class:
        s, anchor = best, idx
        cls = scores.gather(1, idx.unsqueeze(-1).expand(-1, -1, C)).argmax(-1).float()
    else:
        cand = scores.gather(1, idx.unsqueeze(-1).expand(-1, -1, C))  # (B, k, C)
        s, flat = cand.flatten(1).topk(k, dim=1)
        anchor = idx.gather(1, torch.div(flat, C, rounding_mode="floor"))
        cls = torch.remainder(flat, C).float()
    box = boxes.gather(1, anchor.unsqueeze(-1).expand(-1, -1, 4))
    return torch.cat((box.float(), s.unsqueeze(-1).float(), cls.unsqueeze(-1)), -1)


def topk_detections(
    boxes: torch.Tensor, scores: torch.Tensor, max_det: int = 300, conf: float = 0.0, one_class: bool = False
):
    """topk_all's rows above conf, one (K, 6) tensor per image."""
    return [o[o[:, 4] > conf] for o in topk_all(boxes, scores, max_det, one_class)]


def nms_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    max_det: int = 300,
    conf: float = 0.001,
    iou: float = 0.7,
    max_nms: int = 30000,
):
    """The o2m head's decoding: every (anchor, class) above conf (multi-label, as ultralytics'
    validator), per-class NMS (torchvision batched_nms), the max_det best kept."""
    # here: torchvision costs ~1 s of start-up and only the o2m head needs it
    from torchvision.ops import batched_nms

    if max_det < 1:
        raise ValueError(f"max_det must be >= 1, got {max_det!r}")
    out = []
    for b, s in zip(boxes, scores):
        a, c = (s > conf).nonzero(as_tuple=True)
        sc = s[a, c]
        if sc.numel() > max_nms:
            sc, keep = sc.topk(max_nms)
            a, c = a[keep], c[keep]
        keep = batched_nms(b[a].float(), sc.float(), c, iou)[:max_det]
        out.append(torch.cat((b[a[keep]].float(), sc[keep, None].float(), c[keep, None].float()), 1))
    return out


def branch_detections(
    branch: str,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    max_det: int = 300,
    conf: float = 0.001,
    iou: float = 0.7,
    one_class: bool = False,
):
    """How a head's output becomes detections: the o2o branch NMS-free (top-k; one_class: one
    class per anchor), o2m with NMS."""
    if branch == "o2o":
        return topk_detections(boxes, scores, max_det, conf, one_class)
    return nms_detections(boxes, scores, max_det, conf, iou)
