"""The two rooms and the head settings' names (README "Architecture"): the library never imports
the detector application, no module imports a private name of another room, the old module
names still import (with a warning), and a head's settings keep their names from the CLI to the
op schema, validated in one place."""

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import dualhead
from dualhead.settings import O2M, O2O, O2O_E2E, HeadSettings, dual_settings

PKG = Path(dualhead.__file__).parent


def _imports(path: Path):
    """(module imported, names imported) of every import statement of a file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def _room(module: str) -> str:
    return "detector" if module.startswith("dualhead.detector") else "library"


def test_the_library_never_imports_the_detector():
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        if rel.parts[:2] == ("dualhead", "detector") or path.name == "_moved.py":
            continue
        for module, names in _imports(path):
            assert not module.startswith("dualhead.detector"), f"{path}: imports {module}"
            if module == "dualhead":
                assert "detector" not in names, f"{path}: imports dualhead.detector"


def test_no_private_name_crosses_rooms():
    for path in PKG.rglob("*.py"):
        here = _room(".".join(path.relative_to(PKG.parent).with_suffix("").parts))
        for module, names in _imports(path):
            if module.startswith("dualhead") and _room(module) != here:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                private += [p for p in module.split(".") if p.startswith("_")]
                assert not private, f"{path}: imports {private} from {module}"


def test_old_module_names_import_the_new_modules_with_a_warning():
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    import dualhead.train\nexcept DeprecationWarning as e:\n    print('warned:', e)\n"
        "warnings.simplefilter('ignore')\n"
        "import dualhead.train, dualhead.detector.train, dualhead.loss\n"
        "from dualhead.nn import Detector\n"
        "from dualhead.detector.nn import Detector as D2\n"
        "assert dualhead.train is dualhead.detector.train and Detector is D2\n"
        "assert dualhead.loss.DetectionLoss is __import__('dualhead.detector.loss').detector.loss.DetectionLoss\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "warned: dualhead.train is now dualhead.detector.train" in out.stdout


def test_head_settings_are_checked_once_with_the_names_users_know():
    with pytest.raises(ValueError, match=r"^o2o_topk must be an int >= 1, got 0"):
        HeadSettings(topk=0, head="o2o")
    with pytest.raises(ValueError, match=r"^o2o_topk2 must be an int in \[1, o2o_topk=3\], got 5"):
        dual_settings(o2o_topk=3, o2o_topk2=5)
    with pytest.raises(ValueError, match=r"^alpha must be a finite number >= 0"):
        dual_settings(alpha=float("nan"))
    with pytest.raises(ValueError, match=r"^topk must be an int in \[1, N=4\], got 10"):
        HeadSettings(topk=10).check_anchors(4)
    o2m, o2o = dual_settings(alpha=0.5, beta=6.0, r=2.0)
    assert (o2o.alpha, o2o.beta) == (1.0, 12.0) and o2m == O2M  # the consistent metric: r * (alpha, beta)
    assert dual_settings(o2o_alpha=0.5, o2o_beta=2.0)[1].beta == 2.0  # an inconsistent one
    assert O2O.topk == 1 and (O2O_E2E.topk, O2O_E2E.kept) == (7, 1) and O2M.kept == O2M.topk


def test_a_head_setting_keeps_its_name_from_the_cli_to_the_op(monkeypatch):
    """--o2o-topk -> TrainConfig.o2o_topk -> HeadSettings(head="o2o").topk -> the o2o_topk
    argument of torch.ops.dualhead.assign (the C++ struct's head[kO2O].topk)."""
    from dualhead import ops
    from dualhead.detector.cli import main
    from dualhead.detector.train import TrainConfig
    from dualhead.synthetic import make_batch

    assert TrainConfig(o2o_topk=5, o2o_topk2=2).heads()[1] == HeadSettings(topk=5, topk2=2, head="o2o")
    assert main(["train", "--o2o-topk", "0", "--out", "/nonexistent/x"]) == 2  # checked before any work
    schema = torch.ops.dualhead.assign.default._schema
    names = [a.name for a in schema.arguments]
    assert names[8] == "settings"
    layout = [n for n in torch.ops.dualhead.assign_settings().split(",") if n]
    assert layout[:8] == [f"{h}_{k}" for h in ("o2m", "o2o") for k in ("topk", "topk2", "alpha", "beta")]
    seen = {}

    class Spy:
        def assign(self, *args):
            seen.update(zip(layout, args[8]))
            return ops.torch.ops.dualhead.assign(*args)

    monkeypatch.setattr(ops, "_lib", Spy())
    bt = make_batch(B=2, C=4, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ops.dual_assign(
            bt.pd_scores,
            bt.pd_bboxes,
            bt.pd_scores,
            bt.pd_bboxes,
            *bt.args()[2:],
            heads=TrainConfig(o2o_topk=5, o2o_topk2=2).heads(),
        )
    assert (seen["o2o_topk"], seen["o2o_topk2"], seen["o2m_topk"]) == (5, 2, 10)
