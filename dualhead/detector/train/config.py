"""Training configuration: one dataclass, also the CLI's `dualhead train` options (each field's
metadata holds its --help text and allowed values; validate() says what is allowed)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields

from dualhead.settings import O2M, O2O_E2E, HeadSettings, dual_settings

MODE_BRANCHES = {"dual": ("o2m", "o2o"), "o2m": ("o2m",), "o2o": ("o2o",)}  # mode -> the model's head branches
MODES = tuple(MODE_BRANCHES)


def opt(default, help: str, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    # data
    data: str = opt(
        "shapes",
        "'shapes' (embedded, procedural), 'shapes-easy', a YOLO-format folder (images/, labels/, "
        "optional classes.txt; or images/train, images/val splits), an ultralytics dataset YAML, or a "
        "COCO JSON (with --images); checked before training (docs/detector.md, 'Datasets')",
    )
    images: str | None = opt(None, "a COCO JSON --data: its image folder (unset: found beside the JSON)")
    imgsz: int = opt(256, "network input size in pixels, a multiple of 32, at least 32")
    train_len: int | None = opt(
        None, "training images per epoch of the embedded data (unset: 2000); not for a dataset on disk"
    )
    val_len: int | None = opt(None, "validation images of the embedded data (unset: 200); not for a dataset on disk")
    augment: bool = opt(True, "flip / colour / zoom augmentation")
    # model and assignment
    mode: str = opt("dual", "dual heads, or a single o2m / o2o head (ablation baselines)", MODES)
    width: float = opt(0.125, "channel width multiplier of the detector (> 0)")
    o2m_topk: int = opt(O2M.topk, "one-to-many head: positives per ground truth (>= 1)")
    o2o_topk: int = opt(
        O2O_E2E.topk,
        "one-to-one head: top-k candidates (ultralytics E2ELoss 7 then topk2 1; the paper 1: dualhead.settings)",
    )
    o2o_topk2: int | None = opt(
        O2O_E2E.topk2, "one-to-one head: positives kept per ground truth after conflicts (>= 1)"
    )
    alpha: float = opt(O2M.alpha, "metric exponent of the class score (>= 0)")
    beta: float = opt(O2M.beta, "metric exponent of the IoU (>= 0)")
    r: float = opt(1.0, "o2o exponents = r * (alpha, beta): r = 1 is the paper's consistent metric (> 0)")
    o2o_alpha: float | None = opt(None, "o2o alpha set directly (an inconsistent metric; give o2o_beta too)")
    o2o_beta: float | None = opt(None, "o2o beta set directly (give o2o_alpha too)")
    o2o_gain: float = opt(
        1.0,
        "dual mode: the o2o head's loss weight relative to the o2m head's (> 0; with "
        "detached o2o features AdamW makes it nearly moot: see --o2o-lr)",
    )
    o2o_lr: float = opt(
        3.0,
        "the o2o head's learning rate as a multiple of --lr (> 0; 3 measured best on the embedded "
        "data, 1 is YOLOv10's single rate)",
    )
    o2o_detach: bool = opt(
        True,
        "dual mode: the o2o head sees detached features, so only the o2m loss trains the "
        "backbone (YOLOv10); --no-o2o-detach lets both train it",
    )
    weighting: str = opt(
        "equal", "head weights: 'equal' (YOLOv10 1:1) or 'schedule' (ultralytics 0.8 -> 0.1)", ("equal", "schedule")
    )
    # optimisation
    epochs: int = opt(6, "training epochs (>= 1)")
    batch: int = opt(16, "images per step, over all processes (>= 1)")
    lr: float = opt(2e-3, "peak learning rate of AdamW (> 0)")
    weight_decay: float = opt(0.05, "AdamW weight decay on conv weights (>= 0)")
    warmup_iters: int = opt(100, "linear warm-up steps (>= 0)")
    min_lr: float = opt(0.05, "final learning rate as a fraction of lr, cosine schedule (0..1)")
    ema: bool = opt(True, "keep an exponential moving average of the weights (evaluated and saved)")
    ema_tau: float = opt(300.0, "EMA ramp in steps (> 0)")
    amp: str = opt("auto", "mixed precision: 'auto' (on for CUDA), 'on', 'off'", ("auto", "on", "off"))
    channels_last: bool = opt(
        False,
        "NHWC memory format for the convolutions: a faster step on CPU, but PyTorch's "
        "CPU channels-last batch norm sums its statistics in float32, which lowered the "
        "mAP over seeds (benchmarks/RESULTS.md)",
    )
    compile: bool = opt(
        False,
        "torch.compile the model's training forward (and so its backward): fewer, fused "
        "kernels; the first steps compile (minutes on a small CPU), results not bitwise the "
        "eager ones",
    )
    grad_clip: float = opt(10.0, "gradient norm clip (> 0)")
    clip_branches: bool = opt(
        False,
        "dual mode: clip the o2o head's gradient norm and the rest's separately, each "
        "to --grad-clip (one global clip couples the two branches' steps)",
    )
    # run
    device: str = opt("auto", "'auto' (a GPU if visible), 'cpu', 'cuda' or 'cuda:N'")
    workers: int | None = opt(
        None,
        "data loader worker processes (>= 0; unset: on CPU 0 for the embedded data, "
        "drawn up front, and 1 for a directory, as the model needs the cores; up to 8 on "
        "a GPU)",
    )
    seed: int = opt(0, "random seed: a run is reproducible for a fixed seed and device")
    out: str = opt("runs/train", "run folder: results.csv, results.png, last.pt, best.pt")
    resume: bool = opt(False, "continue the run in --out from its last.pt")
    eval_max_det: int = opt(100, "detections per image at evaluation (>= 1)")
    time_limit: float = opt(0.0, "minutes; stop after the epoch that crosses it (0: no limit)")

    def validate(self) -> TrainConfig:
        """Every option checked before any work: ValueError saying what is allowed."""

        def need(cond, name, allowed):
            if not cond:
                raise ValueError(f"--{name.replace('_', '-')} must be {allowed}, got {getattr(self, name)!r}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices:
                need(getattr(self, f.name) in choices, f.name, "one of " + ", ".join(choices))
        need(
            is_int(self.imgsz) and self.imgsz >= 32 and self.imgsz % 32 == 0,
            "imgsz",
            "a multiple of 32, at least 32 (e.g. 256, 640)",
        )
        for name in ("train_len", "val_len"):
            need(
                getattr(self, name) is None or (is_int(getattr(self, name)) and getattr(self, name) >= 1),
                name,
                "an int >= 1",
            )
        need(self.images is None or (isinstance(self.images, str) and self.images.strip()), "images", "a folder")
        need(is_num(self.width) and self.width > 0, "width", "a number > 0")
        need(is_num(self.r) and self.r > 0, "r", "a number > 0")
        need((self.o2o_alpha is None) == (self.o2o_beta is None), "o2o_alpha", "given together with --o2o-beta")
        try:  # the heads' own settings: built, and so checked, by HeadSettings, the one place
            options = self._head_options()
            self._heads = (options, dual_settings(*options))
        except ValueError as e:  # its message names the option as the library does: o2o_topk -> --o2o-topk
            name, rest = str(e).split(" ", 1)
            raise ValueError(f"--{name.replace('_', '-')} {rest}") from None
        need(is_num(self.o2o_gain) and self.o2o_gain > 0, "o2o_gain", "a number > 0")
        need(isinstance(self.o2o_detach, bool), "o2o_detach", "True or False")
        need(isinstance(self.compile, bool), "compile", "True or False")
        need(isinstance(self.clip_branches, bool), "clip_branches", "True or False")
        need(is_num(self.o2o_lr) and self.o2o_lr > 0, "o2o_lr", "a number > 0")
        need(is_int(self.epochs) and self.epochs >= 1, "epochs", "an int >= 1")
        need(is_int(self.batch) and self.batch >= 1, "batch", "an int >= 1")
        need(is_num(self.lr) and self.lr > 0, "lr", "a number > 0")
        need(is_num(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a number >= 0")
        need(is_int(self.warmup_iters) and self.warmup_iters >= 0, "warmup_iters", "an int >= 0")
        need(is_num(self.min_lr) and 0 <= self.min_lr <= 1, "min_lr", "a number in [0, 1]")
        need(is_num(self.ema_tau) and self.ema_tau > 0, "ema_tau", "a number > 0")
        need(is_num(self.grad_clip) and self.grad_clip > 0, "grad_clip", "a number > 0")
        need(self.workers is None or (is_int(self.workers) and self.workers >= 0), "workers", "an int >= 0")
        need(is_int(self.seed), "seed", "an int")
        need(is_int(self.eval_max_det) and self.eval_max_det >= 1, "eval_max_det", "an int >= 1")
        need(is_num(self.time_limit) and self.time_limit >= 0, "time_limit", "a number of minutes >= 0")
        need(isinstance(self.out, str) and self.out.strip() != "", "out", "a folder path")
        return self

    def _head_options(self) -> tuple:
        return (
            self.o2m_topk,
            self.o2o_topk,
            self.o2o_topk2,
            self.alpha,
            self.beta,
            self.r,
            self.o2o_alpha,
            self.o2o_beta,
        )

    def heads(self) -> tuple[HeadSettings, HeadSettings]:
        """The (o2m, o2o) HeadSettings of these options (dualhead.settings.dual_settings), built once
        by validate() and handed on as they are to the loss and the library call."""
        built = getattr(self, "_heads", None)
        if built is None or built[0] != self._head_options():  # not validated, or an option changed since
            self.validate()
        return self._heads[1]

    def loader_workers(self, device, world: int = 1, in_memory: bool = False) -> int:
        """--workers, or its default for the device. On CPU the step's threads need every core: a
        worker taking one slows the step by more than its own work (the step's other thread waits),
        so data already in memory (the embedded images, drawn up front) is loaded in the training
        process (0 workers), and a directory dataset, read and decoded each epoch, gets 1 worker.
        On a GPU the cores left to each of the world's processes, at most 8."""
        if self.workers is not None:
            return self.workers
        if device.type != "cuda":
            return 0 if in_memory else 1
        return max(1, min(8, (os.cpu_count() or 2) // world - 1))

    @classmethod
    def field_names(cls):
        return [f.name for f in fields(cls)]
