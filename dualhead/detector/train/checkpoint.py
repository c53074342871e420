"""Checkpoints: their fields (make_checkpoint writes them, resume_training and load_model read them
back: the one place that knows them), written atomically (a failed write never destroys the
previous file) and loaded with errors that name the file."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path

import torch

from dualhead.detector.nn import Detector


def ensure_writable(folder, option: str) -> Path:
    """Creates folder and proves a file can be written there, before any work (a run must not
    train an epoch to find out it cannot save): ValueError naming the option otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{option} {str(folder)!r} is not a writable folder ({e.strerror or e})") from None
    return folder


def remove_stale_temps(path) -> None:
    """Deletes what a killed save_atomic of `path` left behind (.<name>.*.tmp): a kill between
    mkstemp and os.replace leaves the temporary file, never a damaged `path`."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def ctrl_c_after():
    """Ctrl-C within the block is raised (KeyboardInterrupt) when the block ends. torch.save's
    writer turns a KeyboardInterrupt raised in the middle of a write into a RuntimeError, which
    would hide the interruption from the CLI; the write is short, so it finishes first."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
        signal.SIG_IGN,
        None,
    ):
        yield
        return
    caught = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if caught:
        raise KeyboardInterrupt


def save_atomic(obj, path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then os.replace: readers see the
    old file or the complete new one, never a truncated one (contract §4)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with ctrl_c_after(), os.fdopen(fd, "wb") as f:
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


def load_checkpoint(path, map_location="cpu", option: str = "--weights") -> dict:
    """A dualhead checkpoint dict; ValueError naming the option for a missing file or any file that
    is not one (another framework's weights, a truncated download, an image...)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{option} must be a dualhead checkpoint file, got {str(path)!r} (not found)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # pickle, zip and torch errors alike: the file is not a readable checkpoint
        raise ValueError(
            f"{option} {str(path)!r} is not a dualhead checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else 'unreadable'})"
        ) from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{option} {str(path)!r} is not a dualhead checkpoint (no model_config / model entries)")
    return ckpt


def make_checkpoint(run, cfg, names, epoch: int, best_map: float, metrics: dict) -> dict:
    """A checkpoint's fields, all of them: what resume_training and load_model read back (below).
    run: the TrainStep (model, optimiser, scheduler, scaler, EMA); cfg: the TrainConfig."""
    return {
        "model": run.model.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "model_config": run.model.config,
        "train_config": asdict(cfg),
        "names": names,
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": epoch,
        "best_map": best_map,
        "metrics": metrics,
        "rng": {"torch": torch.get_rng_state()},
    }


def finished_epochs(ckpt: dict) -> int:
    return ckpt["epoch"] + 1


def check_same_model(ckpt: dict, model, path) -> None:
    """ValueError when the checkpoint at `path` holds another model than the options build."""
    diff = config_mismatch(ckpt["model_config"], model.config)
    if diff:
        raise ValueError(
            f"--resume: {path} holds a different model ({'; '.join(diff)}): resume with the options "
            "it was trained with, or train into a new --out"
        )


def resume_training(ckpt: dict, run) -> tuple[int, float]:
    """The training state of `ckpt` put back into `run` (the TrainStep): model, optimiser,
    scheduler, scaler, EMA and the torch generator. Returns (the next epoch, the best mAP so far)."""
    run.model.load_state_dict(ckpt["model"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    if run.ema is not None and ckpt.get("ema"):
        run.ema.load_state_dict(ckpt["ema"])
    torch.set_rng_state(ckpt["rng"]["torch"].cpu())
    return finished_epochs(ckpt), ckpt["best_map"]


def load_model(path, device="cpu", use_ema: bool = True):
    """A Detector from a checkpoint (EMA weights when saved), in eval mode, and its class names."""
    ckpt = load_checkpoint(path)
    try:
        model = Detector(**ckpt["model_config"])
        sd = ckpt["ema"]["module"] if use_ema and ckpt.get("ema") else ckpt["model"]
        model.load_state_dict(sd)
    except (TypeError, KeyError, RuntimeError) as e:
        raise ValueError(
            f"--weights {str(path)!r}: the checkpoint does not fit this dualhead's Detector "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        ) from None
    return model.to(device).eval(), ckpt.get("names")


def config_mismatch(saved: dict, now: dict) -> list[str]:
    """The model settings in which a checkpoint's model_config differs from the one a run builds."""
    return [
        f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)
    ]
