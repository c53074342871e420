"""Pure-torch implementations of dualhead's ops (same signatures as dualhead.ops): the test oracle
for the fused kernels and the fallback when the extension is not built. ops.py composes them from
assign.py (candidate search, per-head selection), dual.py (consistency statistics) and iou.py.
This file only hands their names on."""

from dualhead.iou import iou_aligned
from dualhead.reference.iou import box_iou
from dualhead.reference.ops import assign, dual_assign, to_dense

__all__ = ["box_iou", "iou_aligned", "assign", "dual_assign", "to_dense"]
