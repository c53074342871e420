"""One training step, shared by `dualhead train` and `dualhead bench --train-loop` (so the
benchmark times exactly what the trainer runs): forward, both heads' assignment and loss,
backward, gradient clip, AdamW, EMA.

Host work per step is kept to a handful of calls on lists of tensors: AdamW and the gradient
clip take their foreach forms (on CPU bitwise the per-tensor loops they replace, checked over
training steps; ~250 parameters x ~10 small ops a step before), and on CUDA AdamW is the fused
kernel, which also lets the AMP GradScaler skip its per-step host read of found-inf (a sync that
made the CPU wait for the GPU every step).
"""

from __future__ import annotations

import math

import torch

from dualhead.detector.data import as_float
from dualhead.detector.loss import DetectionLoss
from dualhead.detector.nn import Detector
from dualhead.detector.train.config import MODE_BRANCHES, TrainConfig
from dualhead.detector.train.ema import ModelEMA


def lr_lambda(cfg: TrainConfig, total_iters: int):
    """Linear warm-up from 1 % over warmup_iters, then cosine down to min_lr (fraction of lr)."""
    warm = min(cfg.warmup_iters, max(total_iters // 5, 1))

    def f(it):
        if it < warm:
            return 0.01 + 0.99 * it / warm
        p = min((it - warm) / max(total_iters - warm, 1), 1.0)
        return cfg.min_lr + (1 - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * p))

    return f


def param_groups(model, weight_decay, lr: float, o2o_lr: float = 1.0):
    """Weight decay on conv/linear weights only, not on BN parameters or biases. o2o_lr != 1: the
    o2o branch's parameters in groups of their own at lr * o2o_lr (AdamW's steps do not scale with
    the loss, so with detached features the o2o head's loss weight barely matters: its learning
    rate is the knob that speeds it up)."""
    o2o = model.head.heads["o2o"] if o2o_lr != 1.0 and "o2o" in model.head.heads else None
    own = {id(p) for p in o2o.parameters()} if o2o is not None else set()
    groups = []
    for part, scale in (("rest", 1.0), ("o2o", o2o_lr)):
        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad and (id(p) in own) == (part == "o2o"):
                (decay if p.ndim > 1 else no_decay).append(p)
        if decay or no_decay:
            groups += [
                {"params": decay, "weight_decay": weight_decay, "lr": lr * scale},
                {"params": no_decay, "weight_decay": 0.0, "lr": lr * scale},
            ]
    return groups


def clip_sets(model, params, per_branch: bool) -> list[list[torch.Tensor]]:
    """The parameter sets whose gradient norms are clipped one by one: all together, or (per_branch,
    a model with an o2o head) the o2o head's apart from the rest, so a large o2o gradient does not
    shrink the o2m branch's step and the other way round."""
    o2o = model.head.heads["o2o"] if per_branch and "o2o" in model.head.heads else None
    if o2o is None:
        return [params]
    own = {id(p) for p in o2o.parameters()}
    return [[p for p in params if id(p) not in own], [p for p in params if id(p) in own]]


def make_optimizer(model, cfg, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainer's parameter groups (decay on weights only; the o2o branch at
    lr * o2o_lr): fused on CUDA, foreach on CPU (bitwise the default there; fused is not)."""
    kind = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay, cfg.lr, cfg.o2o_lr), lr=cfg.lr, betas=(0.9, 0.999), **kind
    )


class TrainStep:
    """step(batch) -> (loss, items, stats): one optimisation step on a collated batch.

    ddp is the module called forward (the DistributedDataParallel wrapper under torchrun, else the
    model); scale multiplies the loss before backward (DDP averages gradients over processes, so
    world size brings the step back to one process seeing the whole batch, as ultralytics)."""

    def __init__(
        self,
        model,
        criterion,
        opt,
        sched,
        scaler,
        ema,
        device,
        grad_clip: float,
        amp: bool,
        amp_dtype=torch.float16,
        memory_format=torch.contiguous_format,
        ddp=None,
        scale: float = 1.0,
        clip_branches: bool = False,
    ):
        self.model, self.ddp = model, ddp if ddp is not None else model
        self.criterion, self.opt, self.sched, self.scaler, self.ema = criterion, opt, sched, scaler, ema
        self.device, self.grad_clip, self.amp, self.amp_dtype = device, grad_clip, amp, amp_dtype
        self.memory_format, self.scale = memory_format, scale
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.clip_sets = clip_sets(model, self.params, clip_branches)

    @classmethod
    def build(cls, cfg, nc: int, device: torch.device, total_iters: int) -> TrainStep:
        """The step of a TrainConfig: Detector, DetectionLoss, AdamW with warm-up + cosine over
        total_iters, GradScaler (fp16 AMP on CUDA), EMA; the trainer checkpoints these attributes."""
        branches = MODE_BRANCHES[cfg.mode]
        amp = cfg.amp == "on" or (cfg.amp == "auto" and device.type == "cuda")
        amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model = Detector(nc, cfg.width, branches, cfg.imgsz).to(device).to(memory_format=fmt)
        model.head.detach_o2o = cfg.o2o_detach
        o2m, o2o = cfg.heads()
        criterion = DetectionLoss(
            nc, branches, o2m=o2m, o2o=o2o, weighting=cfg.weighting, epochs=cfg.epochs, o2o_gain=cfg.o2o_gain
        )
        opt = make_optimizer(model, cfg, device)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total_iters))
        scaler = torch.amp.GradScaler(device.type, enabled=amp and amp_dtype == torch.float16)
        ema = ModelEMA(model, tau=cfg.ema_tau) if cfg.ema else None
        step = cls(
            model,
            criterion,
            opt,
            sched,
            scaler,
            ema,
            device,
            cfg.grad_clip,
            amp,
            amp_dtype,
            fmt,
            clip_branches=cfg.clip_branches,
        )
        if cfg.compile:
            step.compile()
        return step

    def compile(self):
        """torch.compile the forward module (the DDP wrapper too, when there is one: compile after
        wrapping). The model itself stays eager: evaluation, EMA and checkpoints use it."""
        self.ddp = torch.compile(self.ddp)

    def __call__(self, batch):
        imgs = as_float(batch["images"], self.device, self.memory_format)
        gl, gb, gm = (batch[k].to(self.device, non_blocking=True) for k in ("gt_labels", "gt_bboxes", "mask_gt"))
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            out, feats = self.ddp(imgs)
            anchors, strides = self.model.head.anchors(feats)
            loss, items, stats = self.criterion(out, anchors, strides, gl, gb, gm)
        self.scaler.scale(loss * self.scale).backward()
        self.scaler.unscale_(self.opt)
        for params in self.clip_sets:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        if self.sched is not None:
            self.sched.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss, items, stats
