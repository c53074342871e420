"""Module names that moved: importing one (`import`, `python -m`, `torchrun -m`) fails at once
with a one-line ModuleNotFoundError naming the new module, instead of Python's bare "No module
named ...". Nothing of the detector application is imported here."""

from __future__ import annotations

import importlib.abc
import sys

_APP = "nn loss train data evaluate diagnose predict cli device".split()
_EXPERIMENTS = "ablate ultralytics_anchor bench_train bench_train_step".split()
# old module prefix -> new one (the longest matching prefix wins)
MOVED = {
    **{f"dualhead.{m}": f"dualhead.detector.{m}" for m in _APP},
    **{f"dualhead.{m}": f"dualhead.detector.experiments.{m}" for m in _EXPERIMENTS},
    **{f"dualhead.detector.{m}": f"dualhead.detector.experiments.{m}" for m in _EXPERIMENTS},
}


_LONGEST_FIRST = sorted(MOVED, key=len, reverse=True)


def new_name(name: str) -> str | None:
    """The module that `name` moved to, or None when it did not move."""
    for old in _LONGEST_FIRST:
        if name == old or name.startswith(old + "."):
            return MOVED[old] + name[len(old) :]
    return None


class _Moved(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        new = new_name(name)
        if new is not None:
            raise ModuleNotFoundError(f"{name} was renamed {new}", name=name)
        return None


def install() -> None:
    if not any(isinstance(f, _Moved) for f in sys.meta_path):
        sys.meta_path.insert(0, _Moved())
