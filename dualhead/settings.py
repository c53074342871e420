"""A head's assignment settings as one value, from the CLI down to the kernel's struct
(csrc/assign_core.h HeadSettings): how many candidates it keeps per ground truth (topk), how many
positives survive its conflict resolution (topk2) and the metric's exponents
m = s * p^alpha * IoU^beta. Validated here, once: the trainer's options, the assigners and the ops
all build HeadSettings.

The defaults, and why two heads' differ:
- the one-to-many head: top-10, alpha 0.5, beta 6 (YOLOv10's v10Detect loss);
- the one-to-one head of the library (`ops.dual_assign`, `DualAssigner`): top-1, the paper's
  one-to-one assignment;
- the one-to-one head of the detector's trainer: top-7 then topk2 = 1, as ultralytics' E2ELoss
  trains YOLOv10 (7 candidates compete, the best one per ground truth is kept after conflicts),
  so that its runs compare with ultralytics' YOLOv10n;
- the ultralytics drop-in `TaskAlignedAssigner` keeps ultralytics' own defaults (top-13, alpha 1).
The one-to-one exponents are r * (alpha, beta) of the one-to-many head's (r = 1: the paper's
consistent metric) unless set on their own (an inconsistent metric, for the metric study).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# the argument names a head's fields are known by to users (library keywords; the CLI adds -- and dashes)
_NAMES = {
    "": dict(topk="topk", topk2="topk2", alpha="alpha", beta="beta"),
    "o2m": dict(topk="o2m_topk", topk2="o2m_topk2", alpha="alpha", beta="beta"),
    "o2o": dict(topk="o2o_topk", topk2="o2o_topk2", alpha="o2o_alpha", beta="o2o_beta"),
}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class HeadSettings:
    """topk >= 1 candidates per ground truth; topk2 in [1, topk] (None: topk) positives kept per
    ground truth after conflicts are resolved; alpha, beta >= 0. head ("", "o2m" or "o2o") only names the
    arguments in error messages."""

    topk: int = 10
    topk2: int | None = None
    alpha: float = 0.5
    beta: float = 6.0
    head: str = field(default="", compare=False, repr=False)

    def __post_init__(self):
        n = _NAMES[self.head]
        if not (_is_int(self.topk) and self.topk >= 1):
            raise ValueError(f"{n['topk']} must be an int >= 1, got {self.topk!r}")
        if self.topk2 is not None and not (_is_int(self.topk2) and 1 <= self.topk2 <= self.topk):
            raise ValueError(f"{n['topk2']} must be an int in [1, {n['topk']}={self.topk}], got {self.topk2!r}")
        for k in ("alpha", "beta"):
            v = getattr(self, k)
            if not (_is_num(v) and v >= 0):
                raise ValueError(f"{n[k]} must be a finite number >= 0, got {v!r}")

    @property
    def kept(self) -> int:
        """topk2 resolved: the positives kept per ground truth."""
        return self.topk if self.topk2 is None else self.topk2

    def check_anchors(self, n_anchors: int) -> None:
        """A head cannot keep more candidates than there are anchors."""
        n = _NAMES[self.head]
        for k, v in ((n["topk"], self.topk), (n["topk2"], self.kept)):
            if v > n_anchors:
                raise ValueError(f"{k} must be an int in [1, N={n_anchors}], got {v!r}")


O2M = HeadSettings(topk=10, alpha=0.5, beta=6.0, head="o2m")
O2O = HeadSettings(topk=1, alpha=0.5, beta=6.0, head="o2o")  # the library's: the paper's top-1
O2O_E2E = HeadSettings(topk=7, topk2=1, alpha=0.5, beta=6.0, head="o2o")  # the trainer's: ultralytics E2ELoss


def dual_settings(
    o2m_topk: int = O2M.topk,
    o2o_topk: int = O2O.topk,
    o2o_topk2: int | None = None,
    alpha: float = O2M.alpha,
    beta: float = O2M.beta,
    r: float = 1.0,
    o2o_alpha: float | None = None,
    o2o_beta: float | None = None,
) -> tuple[HeadSettings, HeadSettings]:
    """Both heads' settings from the dual options: the o2m head (o2m_topk, alpha, beta), the o2o
    head (o2o_topk, o2o_topk2, and r * (alpha, beta) unless o2o_alpha / o2o_beta are given)."""
    o2m = HeadSettings(topk=o2m_topk, alpha=alpha, beta=beta, head="o2m")
    if not (_is_num(r) and r >= 0):
        raise ValueError(f"r must be a finite number >= 0, got {r!r}")
    a2 = r * alpha if o2o_alpha is None else o2o_alpha
    b2 = r * beta if o2o_beta is None else o2o_beta
    return o2m, HeadSettings(topk=o2o_topk, topk2=o2o_topk2, alpha=a2, beta=b2, head="o2o")


def heads_or_options(heads, *options):
    """A dual call's settings: `heads` (o2m, o2o) as they are, else dual_settings(*options)."""
    return heads if heads is not None else dual_settings(*options)


def single_settings(head: HeadSettings | None, topk, topk2, alpha, beta) -> HeadSettings:
    """A single-head call's settings: `head` as it is, else built (and so checked) from the
    keywords; both at once is an error (the keywords would be silently ignored)."""
    if head is None:
        return HeadSettings(topk, topk2, alpha, beta)
    if not isinstance(head, HeadSettings):
        raise ValueError(f"head must be a dualhead.HeadSettings, got {type(head).__name__}")
    given = [
        k
        for k, v, d in (
            ("topk", topk, O2M.topk),
            ("topk2", topk2, None),
            ("alpha", alpha, O2M.alpha),
            ("beta", beta, O2M.beta),
        )
        if v != d
    ]
    if given:
        raise ValueError(f"give head or {', '.join(given)}, not both")
    return head
