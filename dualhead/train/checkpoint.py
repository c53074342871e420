"""Checkpoints written atomically (a failed write never destroys the previous file) and loaded
back into a Detector."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def save_atomic(obj, path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then os.replace: readers see the
    old file or the complete new one, never a truncated one (SPEC §4)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights must be a checkpoint file, got {str(path)!r} (not found)")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ckpt, dict) or "model_config" not in ckpt:
        raise ValueError(f"weights {str(path)!r} is not a dualhead checkpoint")
    return ckpt


def load_model(path, device="cpu", use_ema: bool = True):
    """A Detector from a checkpoint (EMA weights when saved), in eval mode, and its class names."""
    from dualhead.nn import Detector

    ckpt = load_checkpoint(path)
    model = Detector(**ckpt["model_config"])
    sd = ckpt["ema"]["module"] if use_ema and ckpt.get("ema") else ckpt["model"]
    model.load_state_dict(sd)
    return model.to(device).eval(), ckpt.get("names")
