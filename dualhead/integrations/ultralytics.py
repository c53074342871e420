"""Make ultralytics' detection losses assign with dualhead's fused kernels.

    from dualhead.integrations import ultralytics as dh_ultralytics
    dh_ultralytics.patch()          # every loss created afterwards uses dualhead
    ...
    dh_ultralytics.unpatch()        # ultralytics' own assigner again
    with dh_ultralytics.patched():  # or scoped
        ...

What changes: the `TaskAlignedAssigner` name that ultralytics.utils.loss resolves when a loss
(v8DetectionLoss, and E2ELoss's two heads for YOLOv10 / YOLO26) builds its assigner. The
constructor arguments (topk, topk2, alpha, beta, stride, num_classes) pass through unchanged.
Losses built before patch() keep the assigner they have. Nothing else in ultralytics changes;
segmentation / pose / OBB losses build their own assigner subclasses and are unaffected.

Releases: the assignment dualhead computes is the one of ultralytics 8.4.128 and later (checked
release by release up to 8.4.190 by `make compat-ultralytics`, RESULTS.md). Older releases assign
differently in ways their assigner's constructor does not show (8.4.0-8.4.127 raise ground-truth
sides shorter than stride[0] to stride[1], not those shorter than stride_val; 8.3 and older have
no small-box floor and no topk2), so patch() refuses them with a message instead of silently
training with another assignment than the user's release computes.
"""

from __future__ import annotations

import contextlib
import re
import warnings

from dualhead.assigners import TaskAlignedAssigner as _DualheadTAL

_original = None

FIRST_EXACT = (8, 4, 128)  # the small-box floor as dualhead computes it: sides < stride_val -> stride_val
NEWEST_CHECKED = (8, 4, 190)  # the newest release benchmarks/compat_ultralytics.py has verified


class UnsupportedRelease(RuntimeError):
    """The installed ultralytics assigns differently from what dualhead computes."""


def release(version: str | None = None) -> tuple[int, int, int]:
    """(major, minor, patch) of the installed ultralytics (or of `version`)."""
    if version is None:
        import ultralytics

        version = ultralytics.__version__
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise UnsupportedRelease(f"cannot read the ultralytics version {version!r}")
    return tuple(int(x) for x in m.groups())


def release_difference(v: tuple[int, int, int]) -> str | None:
    """How release v's TaskAlignedAssigner differs from dualhead's, or None when it does not."""
    if v < (8, 4, 0):
        return (
            "its TaskAlignedAssigner has no small-box floor and no topk2 (and its YOLOv10 loss assigns the "
            "one-to-one head with top-1)"
        )
    if v < FIRST_EXACT:
        return (
            "its TaskAlignedAssigner raises ground-truth sides shorter than stride[0] to stride[1]; from 8.4.128 "
            "on (and in dualhead) sides shorter than stride_val are raised to stride_val"
        )
    return None


def check_release(version: str | None = None) -> None:
    """Refuses (UnsupportedRelease, naming the version and the nearest supported one) a release
    whose assignment dualhead does not reproduce; warns for one newer than the newest checked."""
    v = release(version)
    name = ".".join(map(str, v))
    diff = release_difference(v)
    if diff:
        first = ".".join(map(str, FIRST_EXACT))
        raise UnsupportedRelease(
            f"dualhead.integrations.ultralytics.patch() reproduces ultralytics' assignment from {first} on; the "
            f"installed ultralytics {name} differs: {diff}. Nearest supported release: {first} "
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
    """dualhead's assigner with ultralytics' forward keyword tail (`**extra` pass-through
    tensors, which detection losses never send)."""

    def forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra):
        if extra:
            raise ValueError(f"dualhead's assigner takes no extra tensors, got {sorted(extra)}")
        return super().forward(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt)


def _loss_module():
    import ultralytics.utils.loss as loss

    return loss


def patch(*, force: bool = False) -> None:
    """Route ultralytics' detection losses created from now on through dualhead. Refuses
    (UnsupportedRelease) an ultralytics release whose assignment dualhead does not reproduce;
    force=True patches anyway (for measuring the difference: benchmarks/compat_ultralytics.py)."""
    global _original
    if not force:
        check_release()
    loss = _loss_module()
    if _original is None:
        _original = loss.TaskAlignedAssigner
    loss.TaskAlignedAssigner = UltralyticsTaskAlignedAssigner


def unpatch() -> None:
    """Restore ultralytics' own TaskAlignedAssigner for losses created from now on."""
    global _original
    if _original is not None:
        _loss_module().TaskAlignedAssigner = _original
        _original = None


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
