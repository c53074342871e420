"""Make ultralytics' detection losses assign with dualhead's fused kernels.

    from dualhead.integrations import ultralytics as dh_ultralytics
    dh_ultralytics.patch()          # every loss created afterwards uses dualhead
    ...
    dh_ultralytics.unpatch()        # ultralytics' own assigner again
    with dh_ultralytics.patched():  # or scoped
        ...

What changes: the `TaskAlignedAssigner` name that ultralytics' detection loss module resolves when
a loss (v8DetectionLoss and the losses built on it: YOLOv10's v10DetectLoss, E2ELoss's two heads,
the segmentation and pose losses; in 8.0.x the detection trainer's Loss) builds its assigner. The
constructor arguments (topk, topk2, alpha, beta, stride, num_classes, eps) pass through unchanged.
Losses built before patch() keep the assigner they have. The rotated (OBB) assigner is unaffected.

Releases: each assigns with its own rules, which its assigner's constructor does not show, so
patch() reads the installed release and assigns with its Convention
(`dualhead.Convention.ultralytics(release, stride)`): no small-box floor before 8.4.0; sides
shorter than stride[0] raised to stride_val in 8.4.0-8.4.127; shorter than stride_val from 8.4.128
on. Checked release by release from 8.0.100 to 8.4.190 by `make compat-ultralytics` (RESULTS.md),
THU-MIG/yolov10 (an 8.1.34 fork) included. A release older than 8.0.100 is refused with a message
(its assigner is unchecked); a newer one than 8.4.190 is patched with a warning.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import warnings

from dualhead.assigners import TaskAlignedAssigner as _DualheadTAL
from dualhead.conventions import Convention

_original = None
_module = None

FIRST_CHECKED = (8, 0, 100)  # the oldest release benchmarks/compat_ultralytics.py has verified
NEWEST_CHECKED = (8, 4, 190)  # the newest


class UnsupportedRelease(RuntimeError):
    """The installed ultralytics assigns differently from what dualhead computes."""


def release(version: str | None = None) -> tuple[int, int, int]:
    """(major, minor, patch) of the installed ultralytics (or of `version`)."""
    if version is None:
        import ultralytics  # optional: the patch's users have it

        version = ultralytics.__version__
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise UnsupportedRelease(f"cannot read the ultralytics version {version!r}")
    return tuple(int(x) for x in m.groups())


def release_difference(v: tuple[int, int, int]) -> str | None:
    """Why release v cannot be patched, or None when dualhead reproduces its assignment."""
    if v < FIRST_CHECKED:
        return (
            "releases before 8.0.100 have not been checked against dualhead (their assigner and loss modules "
            "differ from 8.0.100's)"
        )
    return None


def check_release(version: str | None = None) -> None:
    """Refuses (UnsupportedRelease, naming the version and the nearest supported one) a release
    whose assignment dualhead does not reproduce; warns for one newer than the newest checked."""
    v = release(version)
    name = ".".join(map(str, v))
    diff = release_difference(v)
    if diff:
        first = ".".join(map(str, FIRST_CHECKED))
        raise UnsupportedRelease(
            f"dualhead.integrations.ultralytics.patch() reproduces ultralytics' assignment from {first} on; the "
            f"installed ultralytics {name} is older: {diff}. Nearest supported release: {first} "
            f"(pip install 'ultralytics>={first}'), or train without the patch."
        )
    if v > NEWEST_CHECKED:
        warnings.warn(
            f"ultralytics {name} is newer than the newest release checked against dualhead "
            f"({'.'.join(map(str, NEWEST_CHECKED))}): run `make compat-ultralytics` to verify the patch "
            "leaves its loss unchanged",
            RuntimeWarning,
            stacklevel=3,
        )


class UltralyticsTaskAlignedAssigner(_DualheadTAL):
    """dualhead's assigner with the installed release's rules (set by patch(): the class attribute
    `release`) and ultralytics' forward keyword tail (`**extra` pass-through tensors, which
    detection losses never send)."""

    release: tuple[int, int, int] = NEWEST_CHECKED

    def __init__(self, topk=13, num_classes=80, alpha=1.0, beta=6.0, stride=None, eps=1e-9, topk2=None, **kw):
        super().__init__(topk, num_classes, alpha, beta, stride, eps, topk2, **kw)
        if self.convention is None:
            self.convention = Convention.ultralytics(self.release, self.stride, eps=eps)

    def forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra):
        if extra:
            raise ValueError(f"dualhead's assigner takes no extra tensors, got {sorted(extra)}")
        return super().forward(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt)


def _loss_module():
    """The module whose TaskAlignedAssigner name the detection loss resolves: ultralytics.utils.loss
    from 8.1 on; the detection trainer's module in 8.0.x."""
    for name in ("ultralytics.utils.loss", "ultralytics.yolo.v8.detect.train"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(mod, "TaskAlignedAssigner"):
            return mod
    raise UnsupportedRelease("cannot find the module of ultralytics' detection loss to patch")


def patch(*, force: bool = False) -> None:
    """Route ultralytics' detection losses created from now on through dualhead, with the
    installed release's assignment rules. Refuses (UnsupportedRelease) a release whose
    assignment dualhead does not reproduce; force=True patches anyway (with the rules of the
    nearest checked release)."""
    global _original, _module
    if not force:
        check_release()
    v = release()
    v = max(FIRST_CHECKED, v)
    loss = _loss_module()
    if _original is None:
        _original, _module = loss.TaskAlignedAssigner, loss
    cls = type("UltralyticsTaskAlignedAssigner", (UltralyticsTaskAlignedAssigner,), {"release": v})
    loss.TaskAlignedAssigner = cls


def unpatch() -> None:
    """Restore ultralytics' own TaskAlignedAssigner for losses created from now on."""
    global _original, _module
    if _original is not None:
        _module.TaskAlignedAssigner = _original
        _original = _module = None


def loss_heads(criterion) -> list:
    """The per-head detection losses of an ultralytics criterion: E2ELoss's one2many and
    one2one, or the criterion itself (v8DetectionLoss). Each has an .assigner."""
    return [criterion.one2many, criterion.one2one] if hasattr(criterion, "one2many") else [criterion]


def is_patched() -> bool:
    return _original is not None


@contextlib.contextmanager
def patched():
    """patch() for the duration of a with-block (restores the previous state after)."""
    was = is_patched()
    patch()
    try:
        yield
    finally:
        if not was:
            unpatch()
