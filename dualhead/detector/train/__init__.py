"""Training: configuration, the loop, EMA, checkpoints, plots, distributed set-up."""

from dualhead.detector.train.config import MODES, TrainConfig


def train(cfg: TrainConfig) -> dict:
    from dualhead.detector.train.trainer import train as _train

    return _train(cfg)


__all__ = ["MODES", "TrainConfig", "train"]
