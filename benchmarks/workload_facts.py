"""Counts what the CUDA assign cost model (RESULTS.md) is built on, per contract §5 workload: real
ground truths, candidate cells (the grid-cell rule of row_cells in csrc/assign_core.h), candidates,
rows over kBigRowCells = 256 cells (gt_big_kernel) and the largest row.

    python benchmarks/workload_facts.py
"""

import math

import torch

from dualhead.bench import workload_batch
from dualhead.conventions import Convention
from dualhead.reference.assign import candidate_pairs

for wid, B in (("W1", None), ("W2", None), ("W4", None), ("W3", 128)):
    bt, s2, b2, C = workload_batch(wid, "cpu", B)
    grid = torch.ops.dualhead.anchor_grid(bt.anc_points).tolist()
    gt = bt.gt_bboxes
    mask = bt.mask_gt[..., 0].bool()
    Bn, M = mask.shape
    N = bt.anc_points.shape[0]
    cells = []
    for b in range(Bn):
        for g in range(M):
            if not mask[b, g]:
                continue
            x1, y1, x2, y2 = gt[b, g].tolist()
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 16), max(y2 - y1, 16)
            r = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            n = 0
            for _, lw, lh, s in grid:
                i0, i1 = max(0, math.floor(r[0] / s - 0.5)), min(lw - 1, math.ceil(r[2] / s - 0.5))
                j0, j1 = max(0, math.floor(r[1] / s - 0.5)), min(lh - 1, math.ceil(r[3] / s - 0.5))
                if i1 >= i0 and j1 >= j0:
                    n += (i1 - i0 + 1) * (j1 - j0 + 1)
            cells.append(n)
    cells = torch.tensor(cells)
    big = cells > 256
    tiles_small = torch.ceil(cells[~big] / 32)
    tiles_big = torch.ceil(cells[big] / 32)
    ncand = len(candidate_pairs(bt.anc_points, gt, mask, Convention()))
    print(
        f"{wid}: B={Bn} N={N} C={C} rows={len(cells)} cells={int(cells.sum())} cands={ncand} small rows={int((~big).sum())} "
        f"max small tiles={int(tiles_small.max())} big rows={int(big.sum())} max big cells={int(cells.max())} "
        f"-> big serial tiles/warp={math.ceil(int(cells.max()) / 32 / 16)} scoresMB/head={Bn * N * C * 4 / 1e6:.0f}"
    )
