"""Loads the compiled extension (dualhead._C) and remembers why it failed if it did.

Everything in dualhead works without it: the assigners fall back to `dualhead.reference` and
warn once. `dualhead info` prints what was built.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import warnings

import torch

from dualhead import _elf

_error: BaseException | None = None


def _find_so() -> str | None:
    """The built extension beside this package, or None (only there: a stale editable-install
    mapping elsewhere must not stand in for a missing build)."""
    spec = importlib.util.find_spec("dualhead._C")
    here = os.path.dirname(os.path.abspath(__file__))
    if spec is None or spec.origin is None or os.path.dirname(os.path.abspath(spec.origin)) != here:
        return None
    return spec.origin


def _check_linkage(path: str | None) -> None:
    """Refuses a build that carries its own libstdc++ (see _elf.libstdcxx): loading it would not
    fail, but its first formatted error message would lose its numbers or segfault. setup.py
    refuses to produce one; this catches builds made any other way (CMake, an old build tree)."""
    msg = _elf.check_linkage(path, os.environ.get("CXX", "unset")) if path and path.endswith(".so") else None
    if msg:
        raise ImportError(msg)


try:  # importing the module runs the C++ static registrations of torch.ops.dualhead.*
    _so = _find_so()
    if _so is None:  # say so, rather than Python's "partially initialized module" import error
        raise ImportError(
            "the compiled extension dualhead._C is not built (a source checkout): build it with "
            "`pip install -e .` or `make install`"
        )
    _check_linkage(_so)
    from dualhead import _C  # noqa: F401
except (ImportError, OSError) as e:  # not built, built against another torch (ABI), or refused
    _C = None
    _error = e

_warned = False
_has_kernel: dict[tuple[str, str], bool] = {}


def _constant_for_compile(fn):
    """torch.compiler.assume_constant_result(fn) (torch.compile folds fn's result: it is fixed for
    the process) without its import of torch._dynamo, which costs about a second at `import
    dualhead`; the attribute is what that decorator sets (tests/test_compile.py checks)."""
    fn._dynamo_marked_constant = True
    return fn


if _C is not None:
    from dualhead import _fake

    _fake.register()


def available() -> bool:
    """True when torch.ops.dualhead.* are registered by the compiled extension."""
    return _C is not None


def load_error() -> BaseException | None:
    """The exception raised while importing the extension, if any."""
    return _error


@_constant_for_compile
def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether op (e.g. "box_iou") has a kernel for dispatch_key ("CPU", "CUDA"). Memoised: the
    dispatcher query costs a noticeable share of a CUDA assignment call's host time."""
    key = (op, dispatch_key)
    if key not in _has_kernel:
        _has_kernel[key] = available() and torch._C._dispatch_has_kernel_for_dispatch_key(
            f"dualhead::{op}", dispatch_key
        )
    return _has_kernel[key]


def has_op(op: str) -> bool:
    """Whether torch.ops.dualhead.<op> exists (take_cuda_error only in CUDA builds)."""
    return available() and torch._C._dispatch_has_kernel(f"dualhead::{op}")


def cuda_built() -> bool:
    return has_kernel("box_iou", "CUDA")


def cuda_archs() -> list[str]:
    if not available():
        return []
    info = dict(kv.split("=", 1) for kv in torch.ops.dualhead.build_info().split(",") if "=" in kv)
    return [a for a in re.split(r"[;\s]+", info.get("cuda_archs", "")) if a]  # "8.0;9.0" (setup.py), "80 90" (CMake)


@_constant_for_compile
def reference_forced() -> bool:
    """DUALHEAD_REFERENCE=1 sends every op to the pure-torch reference on every device (for
    debugging: the kernels against the oracle on the same inputs, without rebuilding)."""
    return os.environ.get("DUALHEAD_REFERENCE", "0") == "1"


def libstdcxx() -> str:
    """How the built extension links libstdc++ ('dynamic (libstdc++.so.6)' or 'static'), or ''."""
    path = _C.__file__ if _C is not None else _find_so()
    return _elf.libstdcxx(path) if path and path.endswith(".so") else ""


VALUE_ERROR_TAG = "ValueError: "  # csrc/host.h kValueErrorTag


@contextlib.contextmanager
def value_errors():
    """Re-raises the kernels' input-value errors as ValueError (contract §4). The stable ABI's checks
    throw std::runtime_error, which torch turns into RuntimeError; the kernels tag value errors
    (csrc/host.h DH_CHECK_VALUE), and the tag is dropped here."""
    try:
        yield
    except RuntimeError as e:
        msg = str(e)
        if not msg.startswith(VALUE_ERROR_TAG):
            raise
        raise ValueError(msg[len(VALUE_ERROR_TAG) :].split("\nException raised from")[0]) from None


def warn_fallback(op: str, dispatch_key: str) -> None:
    """One warning per process when an op runs on the pure-torch reference: the extension did not
    load, or it has no kernel of op for that device (a build without CUDA, CUDA tensors)."""
    global _warned
    if not _warned:
        _warned = True
        why = (
            f"the compiled extension has no {op} kernel for {dispatch_key} tensors"
            if available()
            else f"compiled extension not available ({_error!r})"
        )
        warnings.warn(
            f"dualhead: {why}; using the pure-torch reference (slower). "
            "Build with: pip install --no-build-isolation -e .",
            RuntimeWarning,
            stacklevel=3,
        )
