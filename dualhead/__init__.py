"""dualhead: fused kernels for YOLOv10's consistent dual assignments.

The library (this package): `dualhead.ops` (the ops), the ultralytics-compatible assigners,
`dualhead.reference` (the pure-torch oracle), `dualhead.integrations.ultralytics` (the drop-in
patch). The detector application built on it lives in `dualhead.detector` and is never imported
from here.
"""

__version__ = "0.1.0"

from dualhead import (  # noqa: E402
    _moved,  # noqa: E402
    ops,
    reference,
)
from dualhead.assigners import DualAssigner, TaskAlignedAssigner  # noqa: E402
from dualhead.assignment import Assignment, ConsistencyStats, DualAssignment  # noqa: E402
from dualhead.conventions import Convention  # noqa: E402
from dualhead.settings import HeadSettings  # noqa: E402

_moved.install()

__all__ = [
    "Assignment",
    "ConsistencyStats",
    "Convention",
    "DualAssignment",
    "DualAssigner",
    "HeadSettings",
    "TaskAlignedAssigner",
    "ops",
    "reference",
    "__version__",
]
