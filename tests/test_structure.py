"""The rooms and their arrows (README "Architecture", read from there): no import the README does
not draw, no import circle, imports at the top of modules unless a reason is written here,
package __init__ files that only hand names on; the old module names fail in one line naming the
new one; the library's tools run without the application; and a head's settings are one value,
with one name from the CLI to the op schema, built and checked once."""

import ast
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import dualhead
from dualhead.settings import O2M, O2O, O2O_E2E, HeadSettings, dual_settings

PKG = Path(dualhead.__file__).parent


ROOT = PKG.parent
README = ROOT / "README.md"
# The tests that read the source: under mutmut (make mutation) the source is its rewritten copy,
# whose trampolines import inside functions; they test no behaviour a mutant could change.
reads_source = pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ, reason="reads mutmut's rewritten source")

# Imports inside functions, each for a reason; every other import is at the top of its module.
LAZY = {
    "dualhead._C": "the compiled extension: imported once _ext has loaded it (info), or to load it (_ext)",
    "dualhead._fake": "the fake kernels: registered only when the extension has loaded",
    "ultralytics": "optional (the test extra): a missing one is a one-line error naming the install",
    "mmdet": "optional: the drop-in's users have it",
    "torchvision": "about 1 s of start-up on 2 cores (measured), for NMS and box_iou only",
    "matplotlib": "about 0.3 s of start-up (measured), for the plots at an epoch's end only",
    "pycocotools": "the COCO evaluator, or faster_coco_eval: whichever is installed",
    "faster_coco_eval": "the faster COCO evaluator, when installed",
    "torch.utils.benchmark": "imports torch.utils.cpp_extension, which logs a CUDA_HOME warning",
    "onnx": "optional (the export extra): dualhead export checks for it first and names the install",
    "onnxruntime": "optional (the export extra)",
    "openvino": "optional (the export extra)",
}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__)."""
    out = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


# the compiled extension is a module too (an import of it is not an import of the package)
EXTENSIONS = {"dualhead." + p.name.split(".")[0] for p in PKG.glob("*.so")}


MODULES = _modules()


def _imports(path: Path, where: str = "all"):
    """(module imported, names imported, node) of the import statements of a file: where='all',
    'function' (inside a def) or 'top' (the others)."""
    tree = ast.parse(path.read_text())
    nested = {
        id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)
    }
    for node in ast.walk(tree):
        if where != "all" and (id(node) in nested) != (where == "function"):
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names], node
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node


def _targets(module: str, names) -> list[str]:
    """The package's modules an import statement loads: `from pkg import mod` names the submodule."""
    subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES or f"{module}.{n}" in EXTENSIONS]
    return subs + ([module] if module in MODULES and len(subs) < len(names) or not names else [])


def _graph() -> dict[str, set[str]]:
    return {
        name: {t for m, names, _ in _imports(path) for t in _targets(m, names) if t in MODULES and t != name}
        for name, path in MODULES.items()
    }


def _room(module: str) -> str:
    if module == "dualhead.detector.cli":
        return "cli"
    if module.startswith("dualhead.detector.experiments"):
        return "experiments"
    return "product" if module.startswith("dualhead.detector") else "library"


def _drawn_arrows() -> tuple[set[str], set[tuple[str, str]]]:
    """The rooms and arrows of README's architecture block."""
    text = README.read_text()
    block = text[text.index("rooms:\n") : text.index("```", text.index("rooms:\n"))]
    rooms_part, arrows_part = block.split("arrows:\n")
    rooms = {ln.split()[0] for ln in rooms_part.splitlines()[1:] if ln.strip()}
    arrows = set()
    for ln in arrows_part.splitlines():
        if "->" in ln:
            src, dsts = ln.split("->")
            arrows |= {(src.strip(), d.strip()) for d in dsts.split(",")}
    return rooms, arrows


@reads_source
def test_the_arrows_between_rooms_are_readmes():
    rooms, drawn = _drawn_arrows()
    assert rooms == {"library", "product", "experiments", "cli"}
    found: dict[tuple[str, str], str] = {}
    for src, dsts in _graph().items():
        for dst in dsts:
            if _room(src) != _room(dst):
                found.setdefault((_room(src), _room(dst)), f"{src} -> {dst}")
    undrawn = {a: found[a] for a in set(found) - drawn}
    assert not undrawn, f"imports README does not draw: {undrawn}"
    assert not drawn - set(found), f"README draws arrows no import makes: {drawn - set(found)}"


@reads_source
def test_no_import_circle():
    graph, state, circles = _graph(), {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                circles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


@reads_source
def test_a_circle_would_be_found():
    """The graph sees `from package import submodule` and `import a.b as c` as arrows to the submodule."""
    graph = _graph()
    assert "dualhead.detector.data.cache" in graph["dualhead.detector.data.yolo"]  # import ... as cache
    assert "dualhead.detector.train.dist" in graph["dualhead.detector.train.trainer"]
    assert "dualhead.detector.experiments.bench_train" in graph["dualhead.detector.cli"]  # from pkg import mod
    assert (
        "dualhead.detector.nn" in graph["dualhead.detector.loss"]
        or "dualhead.detector.nn.head" in graph["dualhead.detector.loss"]
    )


@reads_source
def test_package_inits_only_hand_names_on():
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)  # the docstring
            )
            ok = ok or (isinstance(node, ast.Assign) and [t.id for t in node.targets] in (["__all__"], ["__version__"]))
            ok = ok or (name == "dualhead" and ast.unparse(node) == "_moved.install()")
            assert ok, f"{path}:{node.lineno}: {ast.unparse(node)[:80]!r} is more than handing names on"


def _lazy_reason(module: str, names) -> str | None:
    for m in [module] + [f"{module}.{n}" for n in names]:
        for prefix, why in LAZY.items():
            if m == prefix or m.startswith(prefix + "."):
                return why
    return None


@reads_source
def test_imports_are_at_the_top_unless_a_reason_is_written():
    for path in MODULES.values():
        for module, names, node in _imports(path, "function"):
            assert _lazy_reason(module, names), (
                f"{path}:{node.lineno}: import {module} in a function, no reason in LAZY"
            )
    assert _lazy_reason("dualhead", ["_C"]) and not _lazy_reason("dualhead", ["ops"])


@reads_source
def test_the_library_never_imports_the_detector():
    for name, path in MODULES.items():
        if _room(name) != "library":
            continue
        for module, names, _ in _imports(path):
            assert not module.startswith("dualhead.detector"), f"{path}: imports {module}"
            if module == "dualhead":
                assert "detector" not in names, f"{path}: imports dualhead.detector"


@reads_source
def test_no_private_name_crosses_rooms():
    for name, path in MODULES.items():
        for module, names, _ in _imports(path):
            if module.startswith("dualhead") and _room(module) != _room(name):
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                private += [p for p in module.split(".") if p.startswith("_")]
                assert not private, f"{path}: imports {private} from {module}"


def _run(*args, code=None):
    cmd = [sys.executable, *(["-c", code] if code else args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def test_old_module_names_fail_in_one_line_naming_the_new_one():
    out = _run(code="import dualhead.train")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: dualhead.train was renamed dualhead.detector.train"
    )
    out = _run(code="from dualhead.detector.ablate import ablate")
    assert "dualhead.detector.ablate was renamed dualhead.detector.experiments.ablate" in out.stderr
    out = _run(code="import dualhead.nn.head")
    assert "dualhead.nn was renamed dualhead.detector.nn" in out.stderr  # its package, the first import
    # python -m (and torchrun -m, which starts python -m): one line, no traceback
    out = _run("-m", "dualhead.cli", "train", "--epochs", "1")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().count("\n") == 0
    assert "dualhead.cli was renamed dualhead.detector.cli" in out.stderr
    # what did not move still imports, and a name that never existed keeps Python's own error
    assert _run(code="import dualhead.detector.cli, dualhead.ops, dualhead.detector.experiments.ablate").returncode == 0
    out = _run(code="import dualhead.nonexistent")
    assert "No module named 'dualhead.nonexistent'" in out.stderr


def test_import_dualhead_loads_nothing_of_the_detector():
    out = _run(code="import sys, dualhead; print(sorted(m for m in sys.modules if m.startswith('dualhead.detector')))")
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_library_tools_run_without_the_application():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['dualhead', 'info']\n"
        "try:\n    runpy.run_module('dualhead', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code\n"
        "print('detector loaded:', any(m.startswith('dualhead.detector') for m in sys.modules))\n"
    )
    out = _run(code=code)
    assert out.returncode == 0, out.stderr
    assert "extension:" in out.stdout and "detector loaded: False" in out.stdout
    out = _run("-m", "dualhead", "bench", "--workloads", "W9", "--impls", "dualhead")
    assert out.returncode == 2 and out.stderr.startswith("dualhead bench: error:") and "W9" in out.stderr, out.stderr
    assert "--train-step" not in _run("-m", "dualhead", "bench", "--help").stdout  # the detector's options are not here


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


@pytest.mark.parametrize("mode", ["dual", "o2o"])
def test_a_heads_settings_are_one_value_from_the_config_to_the_op(monkeypatch, mode):
    """TrainConfig.validate() builds (and so checks) each head's HeadSettings once; the same objects
    reach the library call, for both heads together and for a single head, through DetectionLoss
    and DualAssigner: nothing is taken apart or built again on the way."""
    from dualhead import ops
    from dualhead.detector.data import DetectionSet, ShapesDataset, collate
    from dualhead.detector.train import TrainConfig
    from dualhead.detector.train.step import TrainStep

    built, seen = [], {}
    check = HeadSettings.__post_init__
    monkeypatch.setattr(HeadSettings, "__post_init__", lambda self: (built.append(self), check(self))[1])
    cfg = TrainConfig(mode=mode, imgsz=64, width=0.0625, o2o_topk=5, o2o_topk2=2, r=0.5).validate()
    heads = cfg.heads()
    assert built == list(heads) and (heads[1].topk, heads[1].topk2, heads[1].alpha, heads[1].beta) == (5, 2, 0.25, 3.0)
    real_dual, real_single = ops.dual_assign, ops.assign
    monkeypatch.setattr(ops, "dual_assign", lambda *a, **k: (seen.update(dual=k["heads"]), real_dual(*a, **k))[1])
    monkeypatch.setattr(ops, "assign", lambda *a, **k: (seen.update(single=k["head"]), real_single(*a, **k))[1])
    run = TrainStep.build(cfg, 5, torch.device("cpu"), total_iters=2)
    ds = DetectionSet(ShapesDataset("train", 2, 64, max_objects=3))
    run(collate([ds[0], ds[1]]))
    if mode == "dual":
        assert seen["dual"][0] is heads[0] and seen["dual"][1] is heads[1]
    else:
        assert seen["single"] is heads[1]
    assert len(built) == 2  # validated once: no HeadSettings built after validate()
    assert cfg.heads() is heads
    cfg.o2o_topk = 3  # an option changed after validate(): the heads follow it, checked again
    assert cfg.heads()[1].topk == 3


def _defined(path: Path) -> set[str]:
    """The names a module defines itself (functions, classes, assignments at its top level)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


@reads_source
def test_names_are_imported_from_their_home():
    """A module's name is imported from the module that defines it, or from a package __init__
    that hands it on: never through another module that merely imported it (an arrow the
    architecture does not show)."""
    for path in MODULES.values():
        for module, names, node in _imports(path, "top"):
            home = MODULES.get(module)
            if home is None or home.name == "__init__.py":
                continue
            stray = [n for n in names if f"{module}.{n}" not in MODULES and n not in _defined(home)]
            assert not stray, f"{path}:{node.lineno}: {stray} imported from {module}, which does not define them"
