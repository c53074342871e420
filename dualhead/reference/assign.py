"""Task-aligned assignment (contract §1) in pure torch: the test oracle and the no-compiler fallback.

Sparse throughout: it works on the list of (image, ground truth, anchor) candidate pairs and on
per-anchor arrays, never on (B, M, N) float tensors (only a bounded chunk of the in-box boolean
mask exists at a time). Every float operation that decides a pick is the same torch operation,
in the same order, as ultralytics 8.4.190's TaskAlignedAssigner, so the two agree bit for bit on
fp32 inputs; see shared/reference/ultralytics_tal.md for the quirks reproduced here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dualhead.assignment import RANK_DEPTH, Assignment
from dualhead.iou import iou_aligned

CHUNK = 1 << 22  # in-box mask / metric elements evaluated at a time (bounded memory)


@dataclass
class Pairs:
    """Candidate pairs, sorted by (image, ground truth, anchor)."""

    b: torch.Tensor  # image
    g: torch.Tensor  # ground truth slot
    a: torch.Tensor  # anchor

    def __len__(self):
        return self.b.numel()


def candidate_region(gt_bboxes: torch.Tensor, conv) -> torch.Tensor:
    """A ground truth's region (K, 4) xyxy (conv: dualhead.Convention): with round_trip, each side
    < floor_below widened to floor_to about the centre through ultralytics 8.4's xyxy->xywh->xyxy
    round trip (it rounds even boxes that are not widened); without, the box itself."""
    if not conv.round_trip:
        return gt_bboxes
    x1, y1, x2, y2 = gt_bboxes.unbind(-1)
    cxy = torch.stack(((x1 + x2) / 2, (y1 + y2) / 2), -1)
    wh = torch.stack((x2 - x1, y2 - y1), -1)
    wh = torch.where(wh < conv.floor_below, torch.tensor(conv.floor_to, dtype=wh.dtype, device=wh.device), wh)
    half = wh / 2
    return torch.cat((cxy - half, cxy + half), -1)


def inside(ax, ay, r, margin):
    """Anchors (ax, ay) strictly more than margin px inside regions r (..., 4) (broadcast)."""
    ok = ax - r[..., 0:1] > margin
    ok &= ay - r[..., 1:2] > margin
    ok &= r[..., 2:3] - ax > margin
    ok &= r[..., 3:4] - ay > margin
    return ok


def candidate_pairs(anc_points: torch.Tensor, gt_bboxes: torch.Tensor, mask: torch.Tensor, conv) -> Pairs:
    """Every (b, g, a) with g a real ground truth and anchor a strictly inside its region."""
    B, M = mask.shape
    N = anc_points.shape[0]
    rows = mask.reshape(-1).nonzero().squeeze(1)
    region = candidate_region(gt_bboxes.reshape(-1, 4)[rows].float(), conv)
    ax, ay = anc_points[:, 0].float(), anc_points[:, 1].float()
    out_rows, out_anchors = [rows[:0]], [rows[:0]]  # no real ground truth: no pair
    step = max(1, CHUNK // max(N, 1))
    for s in range(0, rows.numel(), step):
        i, a = inside(ax, ay, region[s : s + step], conv.margin).nonzero(as_tuple=True)
        out_rows.append(rows[s + i])
        out_anchors.append(a)
    flat, a = torch.cat(out_rows), torch.cat(out_anchors)
    return Pairs(flat // M, flat % M, a)


def pair_metrics(pairs, pd_scores, pd_bboxes, labels, gt_bboxes, alpha, beta, iou_type):
    """Overlap o = max(IoU, 0) and metric m = p^alpha * o^beta of each pair, in fp32.

    Non-finite predictions give o = 0 / m = 0 instead of NaN targets (contract §4)."""
    b, g, a = pairs.b, pairs.g, pairs.a
    p = pd_scores[b, a, labels[b, g]].float()
    return overlap_metric(p, gt_bboxes[b, g].float(), pd_bboxes[b, a].float(), alpha, beta, iou_type)


def overlap_metric(p, gt_boxes, pred_boxes, alpha, beta, iou_type):
    """o = max(IoU(gt_boxes, pred_boxes), 0) (broadcast) and m = p^alpha * o^beta, fp32; a
    non-finite o or m is 0 (pair_metrics)."""
    o = iou_aligned(gt_boxes, pred_boxes, iou_type).clamp_(0)
    o = torch.where(torch.isfinite(o), o, torch.zeros_like(o))
    m = p.pow(alpha) * o.pow(beta)
    m = torch.where(torch.isfinite(m) & (m >= 0), m, torch.zeros_like(m))
    return o, m


def topk_first_pairs(anc_points, pd_scores, pd_bboxes, labels, gt_bboxes, mask, head, conv):
    """The top-k-first order (TOOD): per real ground truth, its best max(topk, RANK_DEPTH) anchors
    over all N by metric (larger first, the smaller anchor on ties) among those with a positive
    metric, as pairs sorted by (image, ground truth, anchor), with each pair's o and m and whether
    it is a positive claim (within the head's top-k and inside the region). Rows are taken a
    bounded chunk at a time (no (B, M, N) tensor)."""
    B, M = mask.shape
    N = anc_points.shape[0]
    rows = mask.reshape(-1).nonzero().squeeze(1)
    depth = min(max(head.topk, RANK_DEPTH), N)
    region = candidate_region(gt_bboxes.reshape(-1, 4)[rows].float(), conv)
    ax, ay = anc_points[:, 0].float(), anc_points[:, 1].float()
    outs = []
    step = max(1, CHUNK // max(N, 1))
    for s in range(0, rows.numel(), step):
        r = rows[s : s + step]
        b, g = r // M, r % M
        p = pd_scores[b][torch.arange(r.numel(), device=r.device), :, labels[b, g]].float()  # (R, N)
        gb = gt_bboxes[b, g].float()[:, None, :]
        o, m = overlap_metric(p, gb, pd_bboxes[b].float(), head.alpha, head.beta, conv.iou_type)
        vals, idx = torch.sort(-m, dim=1, stable=True)  # metric desc, anchor asc on ties
        vals, idx = -vals[:, :depth], idx[:, :depth]
        rank = torch.arange(depth, device=r.device).expand_as(idx)
        keep = vals > 0
        claim = keep & (rank < head.topk) & inside(ax[idx], ay[idx], region[s : s + step], conv.margin)
        ri, ci = keep.nonzero(as_tuple=True)
        a = idx[ri, ci]
        outs.append((r[ri], a, o.gather(1, idx)[ri, ci], vals[ri, ci], claim[ri, ci]))
    if not outs:
        z = rows.new_zeros(0)
        f = torch.zeros(0, dtype=torch.float32, device=rows.device)
        return Pairs(z, z, z), f, f, torch.zeros(0, dtype=torch.bool, device=rows.device)
    flat, a, o, m, claim = (torch.cat(x) for x in zip(*outs))
    order = torch.argsort(flat * N + a)
    flat, a, o, m, claim = flat[order], a[order], o[order], m[order], claim[order]
    return Pairs(flat // M, flat % M, a), o, m, claim


def group_starts(sorted_group: torch.Tensor) -> torch.Tensor:
    """Index of the first element of each element's run in a sorted vector."""
    return torch.searchsorted(sorted_group, sorted_group)


def sparse_topk(group: torch.Tensor, anchor: torch.Tensor, value: torch.Tensor, k: int) -> torch.Tensor:
    """Which listed entries are in their group's top-k over *all* anchors, unlisted anchors
    counting as value 0 (torch.topk over a dense row with zeros), ties to the smaller anchor.

    Entries must be sorted by (group, anchor) and have value >= 0. An entry with value > 0 is in
    iff fewer than k listed entries of its group rank before it; a zero-valued one (anchor a)
    iff n_pos + (a - #{positive-valued entries with smaller anchor}) < k.
    """
    n = group.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.bool, device=group.device)
    order = torch.argsort(-value, stable=True)  # value desc, anchor asc within equal values
    order = order[torch.argsort(group[order], stable=True)]
    gs = group[order]
    rank_sorted = torch.arange(n, device=group.device) - group_starts(gs)
    rank = torch.empty_like(rank_sorted).scatter_(0, order, rank_sorted)
    pos = value > 0
    # positive-valued entries of the same group with a smaller anchor (input order is by anchor)
    csum = torch.cumsum(pos.long(), 0) - pos.long()
    starts = group_starts(group)
    before = csum - csum[starts]
    n_pos_total = torch.zeros(n, dtype=torch.long, device=group.device).index_add_(0, starts, pos.long())[starts]
    keep_zero = (n_pos_total + (anchor - before)) < k
    return torch.where(pos, rank < k, keep_zero)


def resolve_conflicts(pairs, o, claim, B, n_anchors, conflict):
    """Per anchor (flat b*N + a): number of claimants and the winning ground truth.

    conflict 'all' (ultralytics): argmax of o over all ground truths of the image (o = 0 for
    non-candidates): the smallest index among the maxima, index 0 when every o is 0.
    'claimants': the same argmax over the claiming ground truths only. ('all_pairs' is decided
    by all_pairs_winners; here it gives the claimants' winner, used for single claims only.)"""
    flat = pairs.b * n_anchors + pairs.a
    size = B * n_anchors
    claims = torch.zeros(size, dtype=torch.long, device=o.device).index_add_(
        0, flat[claim], torch.ones_like(flat[claim])
    )
    sel = torch.ones_like(claim) if conflict == "all" else claim
    f, oo, gg = flat[sel], o[sel], pairs.g[sel]
    best = torch.zeros(size, dtype=o.dtype, device=o.device).scatter_reduce_(0, f, oo, "amax")
    at_best = oo == best[f]
    big = torch.iinfo(torch.long).max
    winner = torch.full((size,), big, dtype=torch.long, device=o.device)
    winner.scatter_reduce_(0, f[at_best], gg[at_best], "amin")
    if conflict == "all":
        winner = torch.where(best > 0, winner, torch.zeros_like(winner))
    return claims, winner


def all_pairs_winners(contested, pd_scores, pd_bboxes, labels, gt_bboxes, mask, head, iou_type):
    """Rule 'all_pairs' (YOLOv9, mmyolo) for the contested anchors (flat b*N + a): the ground truth
    of the image with the largest overlap with the anchor's prediction among all its real ground
    truths (first index on ties, 0 when all are 0; padding counts 0), and that pair's o and m
    (the metric of every pair, in or out of the box). O(contested x M), nothing (B, M, N)."""
    N = pd_scores.shape[1]
    b, a = contested // N, contested % N
    pb = pd_bboxes[b, a].float()  # (K, 4)
    o = iou_aligned(gt_bboxes[b].float(), pb[:, None, :], iou_type).clamp_(0)  # (K, M)
    o = torch.where(torch.isfinite(o) & mask[b], o, torch.zeros_like(o))
    g = torch.where(o.amax(1) > 0, torch.argmax(o, 1), 0)  # argmax: the first maximum
    p = pd_scores[b, a, labels[b, g]].float()
    og, mg = overlap_metric(p, gt_bboxes[b, g].float(), pb, head.alpha, head.beta, iou_type)
    real = mask[b, g]
    return g, torch.where(real, og, torch.zeros_like(og)), torch.where(real, mg, torch.zeros_like(mg))


def assign_pairs(pairs, o, m, B, N, M, head, conflict, eps, claim=None, all_pairs=None):
    """Steps 4-7 of contract §1 on precomputed pair metrics -> per-anchor (fg, gt, m, o, t), flat.
    claim: the pairs' positive claims (default: the in-box-first top-k, sparse_topk); all_pairs:
    a function of the contested anchors -> (winner, o, m) for conflict 'all_pairs'."""
    dev = o.device
    group = pairs.b * M + pairs.g
    if claim is None:
        claim = sparse_topk(group, pairs.a, m, head.topk)
    claims, winner = resolve_conflicts(pairs, o, claim, B, N, conflict)
    fg = claims > 0
    # claims == 1: the single claimant; claims > 1: the conflict winner
    gt = torch.zeros(B * N, dtype=torch.long, device=dev)
    flat = pairs.b * N + pairs.a
    single = claim & (claims[flat] == 1)
    gt[flat[single]] = pairs.g[single]
    gt = torch.where(claims > 1, winner, gt)
    # metric and overlap of the final (anchor, gt) pair; 0 when it is not a candidate (the
    # conflict quirk can hand an anchor to a ground truth that does not contain it). A pair is
    # listed once, so under 'claimants' the hit is the claiming pair; under 'all_pairs' the
    # contested anchors are overwritten below.
    mf = torch.zeros(B * N, dtype=torch.float32, device=dev)
    of = torch.zeros_like(mf)
    hit = fg[flat] & (gt[flat] == pairs.g)
    mf[flat[hit]] = m[hit]
    of[flat[hit]] = o[hit]
    if conflict == "all_pairs":
        contested = (claims > 1).nonzero().squeeze(1)
        g, og, mg = all_pairs(contested)
        gt[contested], of[contested], mf[contested] = g, og, mg
    if head.kept != head.topk:
        idx = fg.nonzero().squeeze(1)  # sorted by (b, a)
        grp = (idx // N) * M + gt[idx]
        order = torch.argsort(grp, stable=True)  # -> (group, anchor)
        keep = torch.zeros_like(fg)
        keep[idx[order]] = sparse_topk(grp[order], idx[order] % N, mf[idx[order]], head.kept)
        fg = keep  # written at the positives only
    # per ground truth maxima over the final positives, then t = m * Og / (Mg + eps)
    grp = (torch.arange(B * N, device=dev) // N) * M + gt
    mg = torch.zeros(B * M, dtype=torch.float32, device=dev).scatter_reduce_(0, grp[fg], mf[fg], "amax")
    og = torch.zeros_like(mg).scatter_reduce_(0, grp[fg], of[fg], "amax")
    t = mf * og[grp] / (mg[grp] + eps)
    t = torch.where(fg, t, torch.zeros_like(t))
    gt = torch.where(fg, gt, torch.zeros_like(gt))
    return fg, gt, mf, of, t


def make_assignment(fg, gt, t, labels, gt_bboxes, B, N) -> Assignment:
    """The Assignment of per-anchor (fg, gt, t), flat; M >= 1 (M = 0 is empty_assignment)."""
    bi = torch.arange(B, device=gt.device).repeat_interleave(N)
    return Assignment(
        fg_mask=fg.view(B, N),
        gt_idx=gt.view(B, N),
        labels=labels[bi, gt].view(B, N).clamp(min=0),
        bboxes=gt_bboxes[bi, gt].view(B, N, 4).float(),
        scores=t.view(B, N),
    )


def empty_assignment(B, N, num_classes, device) -> Assignment:
    """M = 0 (no ground-truth slots): labels = C, everything else 0 (ultralytics)."""
    z = torch.zeros(B, N, dtype=torch.long, device=device)
    f = dict(dtype=torch.float32, device=device)
    return Assignment(z != 0, z, z + num_classes, torch.zeros(B, N, 4, **f), torch.zeros(B, N, **f))


def head_assign(pairs, pd_scores, pd_bboxes, labels, mask, gt_bboxes, head, anc_points, conv):
    """One head (its HeadSettings) under Convention conv -> (Assignment, the pairs its statistics
    rank, their m). pairs: the shared in-box candidate pairs (the top-k-first order builds its own
    from the head's predictions)."""
    B, N, C = pd_scores.shape
    M = mask.shape[1]
    if M == 0:
        return empty_assignment(B, N, C, pd_scores.device), pairs, None
    claim = None
    if conv.order == "topk_first":
        pairs, o, m, claim = topk_first_pairs(anc_points, pd_scores, pd_bboxes, labels, gt_bboxes, mask, head, conv)
    else:
        o, m = pair_metrics(pairs, pd_scores, pd_bboxes, labels, gt_bboxes, head.alpha, head.beta, conv.iou_type)

    def all_pairs(contested):
        return all_pairs_winners(contested, pd_scores, pd_bboxes, labels, gt_bboxes, mask, head, conv.iou_type)

    fg, gt, _, _, t = assign_pairs(pairs, o, m, B, N, M, head, conv.conflict, conv.eps, claim, all_pairs)
    return make_assignment(fg, gt, t, labels, gt_bboxes, B, N), pairs, m
