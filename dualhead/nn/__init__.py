"""Networks: the dual detection head and a small YOLO-style detector around it."""

from dualhead.nn.head import BRANCHES, Branch, DualHead, decode_dist, make_anchors
from dualhead.nn.model import Detector
from dualhead.nn.postprocess import branch_detections, nms_detections, topk_detections

__all__ = ["BRANCHES", "Branch", "DualHead", "Detector", "branch_detections", "decode_dist", "make_anchors",
           "nms_detections", "topk_detections"]
