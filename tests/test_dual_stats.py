"""Dual assignment and its consistency statistics (contract §1 'Dual assignment')."""

import pytest
import torch

import dualhead
from dualhead.synthetic import make_batch


def separated_batch(B=2, C=7, seed=0):
    """Ground truths in disjoint 128 px cells: no anchor is a candidate of two of them."""
    g = torch.Generator().manual_seed(seed)
    bt = make_batch(B=B, C=C, seed=seed, n_gt=(1, 1))
    M = 25
    boxes = torch.zeros(B, M, 4)
    for b in range(B):
        for i in range(M):
            cx, cy = (i % 5) * 128 + 64, (i // 5) * 128 + 64
            w, h = (torch.rand(2, generator=g) * 80 + 20).tolist()
            boxes[b, i] = torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    labels = torch.randint(0, C, (B, M, 1), generator=g).float()
    mask = (torch.rand(B, M, 1, generator=g) < 0.8).float()
    return bt.pd_scores, bt.pd_bboxes, bt.anc_points, labels, boxes, mask


@pytest.mark.parametrize("o2o", [dict(o2o_topk=1), dict(o2o_topk=7, o2o_topk2=1)])
@pytest.mark.parametrize("seed", range(3))
def test_identical_heads_pick_the_best_anchor(o2o, seed):
    s, bx, anc, labels, gt, mask = separated_batch(seed=seed)
    res = dualhead.DualAssigner(num_classes=7, **o2o)(s, bx, s.clone(), bx.clone(), anc, labels, gt, mask)
    st = res.stats
    assert st.top1 == 1.0 and st.top5 == 1.0 and st.top10 == 1.0
    # the pick is the ground truth's best o2m anchor (largest metric, smaller index on ties)
    B, M = mask.shape[:2]
    for b in range(B):
        for g in range(M):
            if mask[b, g, 0] and st.pick[b, g] >= 0:
                sel = res.o2m.fg_mask[b] & (res.o2m.gt_idx[b] == g)
                best = res.o2m.scores[b][sel].max()
                assert res.o2m.scores[b, st.pick[b, g]] == best and int(st.rank[b, g]) == 0


def test_gap_matches_formula_from_assignments():
    bt = make_batch(B=3, C=9, seed=11, n_gt=(5, 40))
    s2, b2 = bt.second_head(seed=3)
    res = dualhead.DualAssigner(num_classes=9, o2o_topk=7, o2o_topk2=1)(
        bt.pd_scores, bt.pd_bboxes, s2, b2, bt.anc_points, bt.gt_labels, bt.gt_bboxes, bt.mask_gt
    )
    o2m, o2o, st = res.o2m, res.o2o, res.stats
    B, M = bt.mask_gt.shape[:2]
    checked = 0
    for b in range(B):
        for g in range(M):
            if not bt.mask_gt[b, g, 0]:
                assert st.gap[b, g] == 0
                continue
            omega = (o2m.fg_mask[b] & (o2m.gt_idx[b] == g)).nonzero().flatten().tolist()
            mine = (o2o.fg_mask[b] & (o2o.gt_idx[b] == g)).nonzero().flatten().tolist()
            if mine:
                i = max(mine, key=lambda a: (float(o2o.scores[b, a]), -a))
                a_val = float(o2o.scores[b, i]) - (float(o2m.scores[b, i]) if i in omega else 0.0)
                a_val += sum(float(o2m.scores[b, k]) for k in omega if k != i)
                assert int(st.pick[b, g]) == i
            else:
                a_val = sum(float(o2m.scores[b, k]) for k in omega)
                assert int(st.pick[b, g]) == -1
            assert abs(a_val - float(st.gap[b, g])) < 1e-5
            checked += 1
    assert checked > 20
    assert abs(st.gap_mean - float(st.gap[bt.mask_gt[..., 0].bool()].mean())) < 1e-6


def test_rank_matches_sorted_o2m_metric():
    """rank = position of the o2o pick in the o2m ordering, recomputed densely."""
    bt = make_batch(B=2, C=5, seed=4, n_gt=(3, 15))
    s2, b2 = bt.second_head(seed=9)
    res = dualhead.reference.dual_assign(
        bt.pd_scores, bt.pd_bboxes, s2, b2, bt.anc_points, bt.gt_labels, bt.gt_bboxes, bt.mask_gt
    )
    from dualhead.conventions import Convention
    from dualhead.iou import iou_aligned
    from dualhead.reference.assign import candidate_region

    anc = bt.anc_points
    for b in range(2):
        for g in range(bt.mask_gt.shape[1]):
            if not bt.mask_gt[b, g, 0] or res.stats.pick[b, g] < 0:
                continue
            r = candidate_region(bt.gt_bboxes[b, g][None], Convention())[0]
            inside = (
                (anc[:, 0] - r[0] > 1e-9)
                & (anc[:, 1] - r[1] > 1e-9)
                & (r[2] - anc[:, 0] > 1e-9)
                & (r[3] - anc[:, 1] > 1e-9)
            )
            o = iou_aligned(bt.gt_bboxes[b, g][None], bt.pd_bboxes[b]).clamp(0)
            m = bt.pd_scores[b, :, int(bt.gt_labels[b, g, 0])].pow(0.5) * o.pow(6.0) * inside
            i = int(res.stats.pick[b, g])
            rank = int(((m > m[i]) | ((m == m[i]) & (torch.arange(len(m)) < i)) & inside).sum())
            assert rank == int(res.stats.rank[b, g])


def test_r_scales_o2o_exponents():
    """r = 2: o2o metric = (o2m metric)^2, so with identical predictions the rankings agree."""
    s, bx, anc, labels, gt, mask = separated_batch(seed=7)
    res = dualhead.DualAssigner(num_classes=7, r=2.0)(s, bx, s.clone(), bx.clone(), anc, labels, gt, mask)
    assert res.stats.top1 == 1.0


@pytest.mark.parametrize("impl", ["ops", "reference"])
def test_explicit_o2o_exponents_make_an_inconsistent_metric(impl):
    """o2o_alpha / o2o_beta replace r * (alpha, beta) for the o2o head only (the metric study)."""
    b = make_batch(B=2, C=5, n_gt=(3, 12), seed=4)
    s2, b2 = b.second_head(5)
    args = (b.pd_scores, b.pd_bboxes, s2, b2, b.anc_points, b.gt_labels, b.gt_bboxes, b.mask_gt)
    fn = getattr(dualhead, impl).dual_assign
    res = fn(*args, o2o_topk=7, o2o_topk2=1, o2o_alpha=0.5, o2o_beta=2.0)
    single = dualhead.reference.assign(
        s2, b2, b.anc_points, b.gt_labels, b.gt_bboxes, b.mask_gt, topk=7, topk2=1, alpha=0.5, beta=2.0
    )
    assert torch.equal(res.o2o.fg_mask, single.fg_mask) and torch.equal(res.o2o.gt_idx, single.gt_idx)
    consistent = fn(*args, o2o_topk=7, o2o_topk2=1)
    assert not torch.equal(consistent.o2o.scores, res.o2o.scores)
    o2m = dualhead.reference.assign(*b.args(), topk=10, alpha=0.5, beta=6.0)
    assert torch.equal(res.o2m.fg_mask, o2m.fg_mask)
    d = dualhead.DualAssigner(num_classes=5, o2o_topk=7, o2o_topk2=1, o2o_alpha=0.5, o2o_beta=2.0)(*args)
    assert torch.equal(d.o2o.fg_mask, res.o2o.fg_mask)
    with pytest.raises(ValueError, match="r must be"):
        fn(*args, r=-1.0)
