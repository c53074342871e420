"""Detection data: the embedded procedural dataset (shapes.py), datasets on disk (YOLO labels:
yolo.py, COCO JSON: coco.py, what --data accepts: sources.py), their checks (check.py, images.py),
augmentation (transforms.py) and batching (batches.py). This file only hands their names on."""

from dualhead.detector.data.batches import DetectionSet, EpochIndices, as_float, collate, stack_images
from dualhead.detector.data.coco import CocoDataset
from dualhead.detector.data.shapes import CLASSES, ShapesDataset
from dualhead.detector.data.sources import EMBEDDED, build_dataset
from dualhead.detector.data.transforms import Augment, letterbox
from dualhead.detector.data.yolo import YoloDataset

__all__ = [
    "CLASSES",
    "EMBEDDED",
    "ShapesDataset",
    "YoloDataset",
    "CocoDataset",
    "Augment",
    "letterbox",
    "DetectionSet",
    "EpochIndices",
    "as_float",
    "stack_images",
    "collate",
    "build_dataset",
]
