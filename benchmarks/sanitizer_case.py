"""A small case for compute-sanitizer: every CUDA op once, on CUDA tensors, synchronised."""

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
torch.cuda.synchronize()
print("ok")
