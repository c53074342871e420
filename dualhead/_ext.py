"""Loads the compiled extension (dualhead._C) and remembers why it failed if it did.

Everything in dualhead works without it: the assigners fall back to `dualhead.reference` and
warn once. `dualhead info` prints what was built.
"""

from __future__ import annotations

import re
import warnings

import torch

_error: BaseException | None = None
try:  # importing the module runs the C++ static registrations of torch.ops.dualhead.*
    from dualhead import _C  # noqa: F401
except (ImportError, OSError) as e:  # not built, or built against another torch (ABI)
    _C = None
    _error = e

_warned = False

if _C is not None:
    from dualhead import _fake

    _fake.register()


def available() -> bool:
    """True when torch.ops.dualhead.* are registered by the compiled extension."""
    return _C is not None


def load_error() -> BaseException | None:
    """The exception raised while importing the extension, if any."""
    return _error


@torch.compiler.assume_constant_result  # fixed for the process: torch.compile folds it
def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether op (e.g. "box_iou") has a kernel for dispatch_key ("CPU", "CUDA")."""
    if not available():
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"dualhead::{op}", dispatch_key)


def cuda_built() -> bool:
    return has_kernel("box_iou", "CUDA")


def cuda_archs() -> list[str]:
    if not available():
        return []
    info = dict(kv.split("=", 1) for kv in torch.ops.dualhead.build_info().split(",") if "=" in kv)
    return [a for a in re.split(r"[;\s]+", info.get("cuda_archs", "")) if a]  # "8.0;9.0" (setup.py), "80 90" (CMake)


@torch.compiler.assume_constant_result
def cuda_assign_enabled() -> bool:
    """The CUDA assign kernel compiles in every CI run but has not yet run on a GPU, so
    dualhead.ops routes CUDA tensors through it only when DUALHEAD_CUDA_ASSIGN=1 (the CUDA tests
    and benchmarks/gpu_check.sh set it); otherwise the pure-torch reference runs on the GPU.
    Flip the default once benchmarks/gpu_check.sh has passed on a GPU."""
    import os

    return os.environ.get("DUALHEAD_CUDA_ASSIGN", "0") == "1"


def warn_fallback() -> None:
    """One warning per process when an op runs on the pure-torch reference."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"dualhead: compiled extension not available ({_error!r}); using the pure-torch "
            "reference (slower). Build with: pip install --no-build-isolation -e .",
            RuntimeWarning,
            stacklevel=3,
        )
