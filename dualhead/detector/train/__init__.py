"""Training: configuration (config.py), the loop in parts (trainer.py), one step (step.py), EMA,
checkpoints, plots, distributed set-up. This file only hands their names on."""

from dualhead.detector.train.config import MODES, TrainConfig
from dualhead.detector.train.trainer import train

__all__ = ["MODES", "TrainConfig", "train"]
