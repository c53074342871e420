"""Networks: the dual detection head and a small YOLO-style detector around it."""

from dualhead.detector.nn.head import BRANCHES, Branch, DualHead, decode_dist
from dualhead.detector.nn.model import Detector
from dualhead.detector.nn.postprocess import branch_detections, nms_detections, topk_detections

__all__ = [
    "BRANCHES",
    "Branch",
    "DualHead",
    "Detector",
    "branch_detections",
    "decode_dist",
    "nms_detections",
    "topk_detections",
]
