"""Old names of the detector application's modules (`dualhead.train`, `dualhead.nn`, ... for
`dualhead.detector.train`, ...): they import the modules themselves, with a DeprecationWarning,
for one release."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = (
    "nn",
    "loss",
    "train",
    "data",
    "evaluate",
    "diagnose",
    "predict",
    "ablate",
    "cli",
    "device",
    "bench_train",
    "bench_train_step",
)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        parts = name.split(".")
        if len(parts) >= 2 and parts[0] == "dualhead" and parts[1] in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module):
        name = module.__name__
        new = "dualhead.detector." + name.split(".", 1)[1]
        if name.count(".") == 1:
            warnings.warn(
                f"{name} is now {new}; the old name goes in the next release", DeprecationWarning, stacklevel=2
            )
        sys.modules[name] = importlib.import_module(new)  # the import system returns what sys.modules holds


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
