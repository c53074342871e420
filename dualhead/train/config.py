"""Training configuration: one dataclass, also the CLI's `dualhead train` options."""

from __future__ import annotations

from dataclasses import dataclass, fields

MODE_BRANCHES = {"dual": ("o2m", "o2o"), "o2m": ("o2m",), "o2o": ("o2o",)}  # mode -> the model's head branches
MODES = tuple(MODE_BRANCHES)


@dataclass
class TrainConfig:
    # data
    data: str = "shapes"          # 'shapes' (embedded), 'shapes-easy', or a YOLO-format directory
    imgsz: int = 256
    train_len: int | None = None  # images per epoch for the embedded data (default 2000)
    val_len: int | None = None    # validation images for the embedded data (default 200)
    augment: bool = True
    # model and assignment
    mode: str = "dual"            # dual heads, or a single o2m / o2o head (ablation baselines)
    width: float = 0.125
    o2m_topk: int = 10
    o2o_topk: int = 7             # ultralytics E2ELoss: top-k 7 then topk2 1; the paper: 1
    o2o_topk2: int | None = 1
    alpha: float = 0.5
    beta: float = 6.0
    r: float = 1.0
    o2o_alpha: float | None = None  # set both to use an inconsistent o2o metric
    o2o_beta: float | None = None
    weighting: str = "equal"      # 'equal' (YOLOv10 1:1) or 'schedule' (ultralytics 0.8 -> 0.1)
    # optimisation
    epochs: int = 6
    batch: int = 16               # total over processes
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_iters: int = 100
    min_lr: float = 0.05          # final lr as a fraction of lr (cosine)
    ema: bool = True
    ema_tau: float = 300.0
    amp: str = "auto"             # 'auto' (on for CUDA), 'on', 'off'
    grad_clip: float = 10.0
    # run
    device: str = "auto"
    workers: int = 1
    seed: int = 0
    out: str = "runs/train"
    resume: bool = False          # continue from out/last.pt
    eval_max_det: int = 100
    time_limit: float = 0.0       # minutes; stop after the epoch that crosses it (0: none)

    def validate(self) -> "TrainConfig":
        def need(cond, name):
            if not cond:
                raise ValueError(f"{name} has a bad value: {getattr(self, name)!r}")

        need(self.mode in MODES, "mode")
        need(isinstance(self.imgsz, int) and self.imgsz >= 32 and self.imgsz % 32 == 0, "imgsz")
        need(isinstance(self.epochs, int) and self.epochs >= 1, "epochs")
        need(isinstance(self.batch, int) and self.batch >= 1, "batch")
        need(self.lr > 0, "lr")
        need(self.width > 0, "width")
        need(self.weighting in ("equal", "schedule"), "weighting")
        need(self.amp in ("auto", "on", "off"), "amp")
        need(isinstance(self.workers, int) and self.workers >= 0, "workers")
        need((self.o2o_alpha is None) == (self.o2o_beta is None), "o2o_alpha")
        return self

    @classmethod
    def field_names(cls):
        return [f.name for f in fields(cls)]
