"""Dual assignment (o2m + o2o sharing one candidate search) and the consistency statistics."""

from __future__ import annotations

import torch

from dualhead.assignment import RANK_DEPTH, Assignment, ConsistencyStats


def consistency_stats(pairs, m_o2m, o2m: Assignment, o2o: Assignment, mask: torch.Tensor) -> ConsistencyStats:
    """Per ground truth: the o2o pick, its rank in the o2m ordering, and the supervision gap.

    pairs: the shared candidate pairs; m_o2m: the o2m metric of each pair."""
    B, M = mask.shape
    N = o2m.fg_mask.shape[1]
    dev = mask.device
    G = B * M
    big = torch.iinfo(torch.long).max
    # o2o pick: the ground truth's o2o positive with the largest target score, smaller anchor on ties
    fg = o2o.fg_mask.reshape(-1)
    idx = fg.nonzero().squeeze(1)
    grp = (idx // N) * M + o2o.gt_idx.reshape(-1)[idx]
    t = o2o.scores.reshape(-1)[idx]
    tmax = torch.full((G,), -1.0, dtype=torch.float32, device=dev).scatter_reduce_(0, grp, t, "amax")
    at = t == tmax[grp]
    pick = torch.full((G,), big, dtype=torch.long, device=dev).scatter_reduce_(0, grp[at], idx[at] % N, "amin")
    has = pick != big
    t_o2o = torch.where(has, tmax, torch.zeros_like(tmax))
    # rank of the pick among the ground truth's candidates, ordered by o2m metric
    pgrp = pairs.b * M + pairs.g
    is_pick = pairs.a == pick[pgrp]
    m_pick = torch.zeros(G, dtype=torch.float32, device=dev).index_put_((pgrp[is_pick],), m_o2m[is_pick])
    mp, ap = m_pick[pgrp], pick[pgrp]
    before = (m_o2m > mp) | ((m_o2m == mp) & (pairs.a < ap))
    rank = torch.zeros(G, dtype=torch.long, device=dev).index_add_(0, pgrp, before.long())
    # exact below RANK_DEPTH, RANK_DEPTH beyond it or when the pick is not a candidate (quirk)
    is_cand = torch.zeros(G, dtype=torch.bool, device=dev).index_put_(
        (pgrp[is_pick],), torch.ones_like(pgrp[is_pick], dtype=torch.bool)
    )
    rank = torch.where(is_cand, rank.clamp(max=RANK_DEPTH), torch.full_like(rank, RANK_DEPTH))
    # supervision gap: A = t_o2o,i - 1[i in O] t_o2m,i + sum_{k in O \ {i}} t_o2m,k
    fgm = o2m.fg_mask.reshape(-1)
    midx = fgm.nonzero().squeeze(1)
    mgrp = (midx // N) * M + o2m.gt_idx.reshape(-1)[midx]
    tm = o2m.scores.reshape(-1)[midx]
    omega_sum = torch.zeros(G, dtype=torch.float32, device=dev).index_add_(0, mgrp, tm)
    bi = torch.arange(G, device=dev) // M
    pick_flat = bi * N + torch.where(has, pick, torch.zeros_like(pick))
    in_omega = has & fgm[pick_flat] & (o2m.gt_idx.reshape(-1)[pick_flat] == torch.arange(G, device=dev) % M)
    t_i = torch.where(in_omega, o2m.scores.reshape(-1)[pick_flat], torch.zeros_like(omega_sum))
    gap = t_o2o - t_i + (omega_sum - t_i)
    valid = mask.reshape(-1)
    gap = torch.where(valid, gap, torch.zeros_like(gap))
    pick = torch.where(has, pick, torch.full_like(pick, -1))
    rank = torch.where(has, rank, torch.full_like(rank, -1))
    return ConsistencyStats(pick.view(B, M), rank.view(B, M), gap.view(B, M), valid.view(B, M))
