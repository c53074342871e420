"""The detector application built on the dualhead library (which never imports it).

The product: nn/ (the dual-head network), loss.py, data/ (datasets, checks, batching), train/
(configuration, the loop, checkpoints), evaluate.py and diagnose.py (COCO mAP, false-positive
kinds), predict.py (NMS-free inference), cli.py (the `dualhead` command). experiments/: the
ablation, ultralytics' own models as its outside anchor, the training benchmarks; the product
never imports them. This file only hands the main names on."""

from dualhead.detector.loss import DetectionLoss
from dualhead.detector.nn import Detector
from dualhead.detector.predict import predict
from dualhead.detector.train import TrainConfig, train
from dualhead.detector.train.checkpoint import load_model

__all__ = ["DetectionLoss", "Detector", "TrainConfig", "load_model", "predict", "train"]
