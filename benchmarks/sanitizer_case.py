"""A small case for compute-sanitizer: every CUDA kernel at least once, on CUDA tensors,
synchronised (memcheck, racecheck, synccheck and initcheck run it in gpu_check.sh)."""

import torch

import dualhead
from dualhead.synthetic import make_batch

bt = make_batch(B=2, C=7, seed=0, n_gt=(1, 12), imgsz=160, device="cuda")
bt.gt_bboxes[:, 0] = torch.tensor([4.0, 6.0, 150.0, 140.0], device="cuda")  # ~300 cells: many tiles for one warp
boxes = bt.gt_bboxes[0]
torch.cuda.synchronize()
dualhead.ops.box_iou(boxes, bt.pd_bboxes[0, :50], "ciou")
dualhead.ops.box_iou(boxes[:0], boxes, "iou")  # empty launch path
s2, b2 = bt.second_head(1)
dualhead.ops.dual_assign(bt.pd_scores, bt.pd_bboxes, s2, b2, *bt.args()[2:], o2o_topk=7, o2o_topk2=1)
# A crowded image: M > 256 ground truths, so the resolve kernel's block scan takes several tiles.
cr = make_batch(B=1, C=5, seed=1, n_gt=(300, 300), imgsz=160, kind="crowded", device="cuda")
c2, d2 = cr.second_head(2)
dualhead.ops.dual_assign(cr.pd_scores, cr.pd_bboxes, c2, d2, *cr.args()[2:], o2o_topk=7, o2o_topk2=1)
# topk above the tiles' capacity: the thread-per-row fallback kernel.
dualhead.ops.dual_assign(bt.pd_scores, bt.pd_bboxes, s2, b2, *bt.args()[2:], o2m_topk=40, o2o_topk=33)
# Anchors that are no grid (reversed): the general scan, every row over all anchors (big rows).
flip = [t.flip(1) for t in (bt.pd_scores, bt.pd_bboxes, s2, b2)]
dualhead.ops.dual_assign(*flip, bt.anc_points.flip(0), *bt.args()[3:], o2o_topk=7, o2o_topk2=1)
# fp16 scores, the dense targets, the grid inspection op, and a bad label (the device check).
a = dualhead.ops.assign(bt.pd_scores.half(), *bt.args()[1:], topk=10)
dualhead.ops.to_dense(a, 7)
torch.ops.dualhead.anchor_grid(bt.anc_points)
labels = bt.gt_labels.clone()
labels[0, 0] = 99
dualhead.ops.assign(bt.pd_scores, bt.pd_bboxes, bt.anc_points, labels, bt.gt_bboxes, bt.mask_gt, topk=10)
torch.cuda.synchronize()
try:
    dualhead.ops.check_errors()
    raise SystemExit("the bad label was not reported")
except ValueError:
    pass
print("ok")
