"""The device a user names (--device), checked before any work."""

from __future__ import annotations

import torch


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """'auto' (a GPU if visible), 'cpu', 'cuda' or 'cuda:N' -> torch.device; ValueError naming
    the option for anything else, or for a GPU that is not there."""
    allowed = "'auto', 'cpu', 'cuda' or 'cuda:N'"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{option} must be {allowed}, got {name!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{option} must be {allowed}, got {name!r}")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(
                f"{option} {name!r}: no GPU is visible (torch.cuda.is_available() is False); use --device cpu"
            )
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"{option} {name!r}: only {n} GPU(s) visible (cuda:0..cuda:{n - 1})")
    return dev
