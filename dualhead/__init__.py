"""dualhead: fused kernels for YOLOv10's consistent dual assignments."""

__version__ = "0.1.0"

from dualhead import ops, reference  # noqa: E402
from dualhead.assigners import DualAssigner, TaskAlignedAssigner  # noqa: E402
from dualhead.assignment import Assignment, ConsistencyStats, DualAssignment  # noqa: E402

__all__ = ["Assignment", "ConsistencyStats", "DualAssignment", "DualAssigner", "TaskAlignedAssigner", "ops",
           "reference", "__version__"]
