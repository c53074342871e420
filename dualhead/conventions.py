"""How a codebase's task-aligned assigner picks positives, as one value: `Convention`.

Every task-aligned detector codebase computes the same metric m = p^alpha * IoU^beta, but they
differ in rules that decide which anchors become positives (each difference measured against the
codebase's own assigner: benchmarks/RESULTS.md, docs/library.md "Other codebases"):

- order: "in_box_first" (ultralytics, YOLOv9, mmyolo) takes a ground truth's top-k among its
  candidates (anchors inside its region); "topk_first" (mmdetection's TOOD) takes the top-k over
  all anchors, then keeps those inside the box whose metric is positive.
- conflict: which overlaps decide an anchor claimed by several ground truths (largest wins, the
  smaller index on ties): "all" (ultralytics: every ground truth of the image, overlap counted only
  where the anchor is its candidate; index 0 when all are 0), "all_pairs" (YOLOv9, mmyolo: every
  ground truth, overlap of every pair, so a box that does not hold the anchor can win it),
  "claimants" (TOOD: only the ground truths that claimed it).
- the small-box floor (ultralytics 8.4 only): sides shorter than floor_below are widened to
  floor_to about the centre, through ultralytics' xyxy -> xywh -> xyxy round trip (round_trip);
  8.4.0-8.4.127: below stride[0] -> stride[1]; 8.4.128 on: below stride_val -> stride_val.
  Every other codebase (and ultralytics before 8.4) tests the box itself: round_trip=False.
- margin: an anchor is inside when strictly more than margin px inside all four sides
  (1e-9; TOOD 0.01).
- iou_type: the overlap (ciou; mmyolo's YOLOv6 configs and TOOD: iou); eps: the target score
  normalisation t = m * Og / (Mg + eps) (1e-9; mmyolo 1e-7).

The op receives these fields by name (csrc/assign_settings.h is the one list of the op's settings;
`op_settings` packs them in its order).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

ORDERS = {"in_box_first": 0, "topk_first": 1}
CONFLICT_RULES = {"all": 0, "claimants": 1, "all_pairs": 2}
IOU_KINDS = {"iou": 0, "giou": 1, "diou": 2, "ciou": 3}


def _finite_nonneg(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _choice(name, v, options):
    if v not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {v!r}")


@dataclass(frozen=True)
class Convention:
    """A task-aligned assigner's rules (module docstring). The defaults are ultralytics 8.4.128+
    at strides (8, 16, 32); `Convention.ultralytics(release)`, `.yolov9()`, `.mmyolo()`, `.tood()`
    give each codebase's."""

    order: str = "in_box_first"
    conflict: str = "all"
    floor_below: float = 16.0
    floor_to: float = 16.0
    round_trip: bool = True
    margin: float = 1e-9
    iou_type: str = "ciou"
    eps: float = 1e-9
    name: str = field(default="", compare=False)  # which codebase this is, for messages

    def __post_init__(self):
        _choice("order", self.order, ORDERS)
        _choice("conflict", self.conflict, CONFLICT_RULES)
        _choice("iou_type", self.iou_type, IOU_KINDS)
        for k in ("floor_below", "floor_to", "margin"):
            if not _finite_nonneg(getattr(self, k)):
                raise ValueError(f"{k} must be a finite number >= 0, got {getattr(self, k)!r}")
        if not isinstance(self.round_trip, bool):
            raise ValueError(f"round_trip must be a bool, got {self.round_trip!r}")
        if not self.round_trip and (self.floor_below or self.floor_to):
            raise ValueError(
                "a small-box floor (floor_below, floor_to) needs round_trip=True (ultralytics 8.4's region), got "
                f"floor_below={self.floor_below!r}, floor_to={self.floor_to!r}"
            )
        if not (_finite_nonneg(self.eps) and self.eps < 1):
            raise ValueError(f"eps must be a number in [0, 1), got {self.eps!r}")
        if self.order == "topk_first" and self.conflict == "all":
            raise ValueError(
                "conflict='all' counts the overlaps of candidate pairs, which order='topk_first' does not enumerate: "
                "use conflict='claimants' (TOOD) or 'all_pairs'"
            )

    # --- the codebases ---
    @classmethod
    def ultralytics(cls, release: str | tuple = "8.4.190", stride=(8, 16, 32), **kw) -> Convention:
        """ultralytics' TaskAlignedAssigner of that release (8.0.100 on; THU-MIG/yolov10 is
        ultralytics 8.1.34): the small-box floor of 8.4.0-8.4.127 (sides < stride[0] ->
        stride_val) or 8.4.128 on (sides < stride_val -> stride_val), none before 8.4."""
        v = _release(release)
        stride = [float(s) for s in stride]
        val = stride[1] if len(stride) > 1 else stride[0]
        name = "ultralytics " + ".".join(map(str, v))
        if v < (8, 4, 0):
            return cls(floor_below=0.0, floor_to=0.0, round_trip=False, name=name, **kw)
        below = stride[0] if v < (8, 4, 128) else val
        return cls(floor_below=below, floor_to=val, round_trip=True, name=name, **kw)

    @classmethod
    def yolov10(cls, **kw) -> Convention:
        """THU-MIG/yolov10 (a fork of ultralytics 8.1.34: no small-box floor)."""
        return replace(cls.ultralytics("8.1.34", **kw), name="THU-MIG/yolov10")

    @classmethod
    def yolov9(cls, **kw) -> Convention:
        """WongKinYiu/yolov9 utils/tal/assigner.py: overlaps of every pair decide conflicts."""
        return cls(conflict="all_pairs", floor_below=0.0, floor_to=0.0, round_trip=False, name="yolov9", **kw)

    @classmethod
    def mmyolo(cls, use_ciou: bool = False, eps: float = 1e-7, **kw) -> Convention:
        """mmyolo BatchTaskAlignedAssigner (YOLOv6 configs: IoU; YOLOv8 configs: use_ciou=True)."""
        return cls(
            conflict="all_pairs",
            floor_below=0.0,
            floor_to=0.0,
            round_trip=False,
            iou_type="ciou" if use_ciou else "iou",
            eps=eps,
            name="mmyolo",
            **kw,
        )

    @classmethod
    def tood(cls, **kw) -> Convention:
        """mmdetection TaskAlignedAssigner (TOOD): top-k over all anchors, then in the box with a
        0.01 px margin and a positive metric; conflicts among the claimants; plain IoU."""
        return cls(
            order="topk_first",
            conflict="claimants",
            floor_below=0.0,
            floor_to=0.0,
            round_trip=False,
            margin=0.01,
            iou_type="iou",
            name="mmdetection TOOD",
            **kw,
        )

    @classmethod
    def from_options(cls, min_side=16.0, conflict="all", iou_type="ciou", eps=1e-9) -> Convention:
        """The ops' shorthand keywords: min_side is ultralytics 8.4.128's floor (sides < min_side ->
        min_side, with the round trip)."""
        if not _finite_nonneg(min_side):
            raise ValueError(f"min_side must be a finite number >= 0, got {min_side!r}")
        return cls(conflict=conflict, floor_below=float(min_side), floor_to=float(min_side), iou_type=iou_type, eps=eps)


DEFAULT_OPTIONS = dict(min_side=16.0, conflict="all", iou_type="ciou", eps=1e-9)


def resolve(convention: Convention | None, **options) -> Convention:
    """The call's Convention: `convention`, or one built from the ops' shorthand keywords
    (min_side, conflict, iou_type, eps); giving both is an error."""
    if convention is None:
        return Convention.from_options(**{**DEFAULT_OPTIONS, **options})
    if not isinstance(convention, Convention):
        raise ValueError(f"convention must be a dualhead.Convention, got {type(convention).__name__}")
    given = [k for k, v in options.items() if v != DEFAULT_OPTIONS[k]]
    if given:
        raise ValueError(f"give either convention= or {', '.join(given)}, not both")
    return convention


def op_settings(heads, convention: Convention, layout: list[str]) -> list[float]:
    """The `settings` list of torch.ops.dualhead.assign: every value by its name, in the order of
    `layout` (the op's assign_settings()). heads: one or two HeadSettings (a single head fills
    both slots; the op reads the second only for dual calls)."""
    o2m, o2o = heads[0], heads[-1]
    values = {}
    for prefix, h in (("o2m", o2m), ("o2o", o2o)):
        values.update(
            {f"{prefix}_topk": h.topk, f"{prefix}_topk2": h.kept, f"{prefix}_alpha": h.alpha, f"{prefix}_beta": h.beta}
        )
    c = convention
    values.update(
        order=ORDERS[c.order],
        conflict=CONFLICT_RULES[c.conflict],
        floor_below=c.floor_below,
        floor_to=c.floor_to,
        round_trip=int(c.round_trip),
        margin=c.margin,
        iou_type=IOU_KINDS[c.iou_type],
        eps=c.eps,
    )
    if set(layout) != set(values):
        raise RuntimeError(
            f"the compiled extension's assign settings {layout} differ from this Python layer's {sorted(values)}: "
            "the extension is stale, rebuild it (pip install -e . / make install)"
        )
    return [float(values[n]) for n in layout]


def _release(v) -> tuple[int, int, int]:
    """A release as (major, minor, patch): a tuple as it is, or a string such as "8.4.190" (a
    suffix after the numbers, as in "8.4.0.dev1", is ignored); anything else is an error."""
    if isinstance(v, tuple):
        return v
    m = re.match(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", v.strip()) if isinstance(v, str) else None
    if m is None:
        raise ValueError(f"cannot read the release {v!r} (expected a version such as '8.4.190')")
    return tuple(int(g or 0) for g in m.groups())
