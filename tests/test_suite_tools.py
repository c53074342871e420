"""The suite's own tools: a failing randomized test names its seeds and one command replays
them (conftest.fresh_seed); tests/cuda_emu_mutants.py counts a mutant as caught only by its
expected catcher, after the clean build passed the same selection; every other failure is
"broken" (and fails the run)."""

import os
import re
import shutil
import subprocess
import sys

import cuda_emu_mutants as mm
import pytest

FAILS_ON_ITS_SEED = """
import torch
from conftest import fresh_seed

def test_random():
    a, b = fresh_seed(), fresh_seed()
    print("drew", a, b, float(torch.rand(())))
    assert False
"""


def test_failure_names_its_seeds_and_the_rerun_replays_them(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copy(os.path.join(here, "conftest.py"), tmp_path)
    (tmp_path / "test_r.py").write_text(FAILS_ON_ITS_SEED)
    env = {k: v for k, v in os.environ.items() if k != "DUALHEAD_SEEDS"}

    def run(**extra):
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_r.py::test_random"]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={**env, **extra})
        assert r.returncode == 1, r.stdout + r.stderr
        return r.stdout

    first = run()
    seeds = re.search(r"re-run: DUALHEAD_SEEDS=([\d,]+) python -m pytest 'test_r.py::test_random'", first).group(1)
    drawn = re.search(r"drew (\d+) (\d+) (\S+)", first).groups()
    assert len(seeds.split(",")) == 3 and seeds.split(",")[1:] == list(drawn[:2])  # the global seed, then a, b
    again = run(DUALHEAD_SEEDS=seeds)
    assert re.search(r"drew (\d+) (\d+) (\S+)", again).groups() == drawn  # torch.rand too
    assert re.search(r"drew (\d+) (\d+) (\S+)", run()).groups() != drawn  # fresh otherwise


IDS = ["tests/test_cuda.py::test_a[x]", "tests/test_cuda.py::test_b"]
RACE = "==================\nWARNING: ThreadSanitizer: data race (pid=1)\n  Write of size 4"


def test_expected_sanitizer_report_is_a_catch():
    assert mm.verdict("race", 66, RACE, IDS).startswith("caught (WARNING: ThreadSanitizer: data race")
    asan = "==1==ERROR: AddressSanitizer: stack-buffer-overflow on address"
    assert mm.verdict("asan", 1, asan, IDS) == "caught (ERROR: AddressSanitizer: stack-buffer-overflow)"
    launch = "RuntimeError: gt_tiles_kernel: 1024 threads exceed __launch_bounds__(512)"
    assert mm.verdict("launch", 1, launch, IDS) == "caught (__launch_bounds__)"


def test_another_catcher_or_any_other_failure_is_broken():
    assert mm.verdict("asan", 66, RACE, IDS).startswith("broken (expected asan, got race")
    assert mm.verdict("race", 5, "no tests ran in 0.5s", IDS).startswith("broken (expected race; rc=5")
    err = "ERROR tests/test_cuda.py - ImportError: libtsan.so: cannot open\n1 error in 2s"
    assert mm.verdict("race", 2, err, IDS).startswith("broken")
    assert mm.verdict("race", 127, "bash: .venv/bin/python: No such file or directory", IDS).startswith("broken")
    wrong = "FAILED tests/test_cuda.py::test_a[x] - AssertionError: differs\n1 failed in 3s"
    assert mm.verdict("race", 1, wrong, IDS).startswith("broken")  # wrong results, but no race report


def _failure(node, raised, reason="..."):
    """pytest -q's output of one failed test: the traceback's last line, then the summary."""
    return f"E   assert 1 == 2\n\ntests/test_cuda.py:42: {raised}\nFAILED {node} - {reason}\n1 failed in 3s"


def test_assertion_counts_only_for_a_selected_test():
    ok = _failure("tests/test_cuda.py::test_a[x]", "AssertionError")
    assert mm.verdict("assert", 1, ok, IDS) == "caught (assertion of test_a[x])"
    spaced = _failure("tests/test_cuda.py::test_g[emu-64 rows]", "AssertionError", "assert [] == [[0]]")
    assert mm.verdict("assert", 1, spaced, IDS + ["tests/test_cuda.py::test_g[emu-64 rows]"]).startswith("caught")
    other = _failure("tests/test_cuda.py::test_c", "AssertionError")
    assert mm.verdict("assert", 1, other, IDS).startswith("broken")
    crash = _failure("tests/test_cuda.py::test_a[x]", "RuntimeError", "RuntimeError: illegal")
    assert mm.verdict("assert", 1, crash, IDS).startswith("broken")
    assert mm.verdict("assert", 0, "2 passed in 3s", IDS) == "escaped"


def test_either_catcher_of_an_alternative():
    ubsan = "csrc/anchor_grid.h:70:27: runtime error: pointer index expression with base 0x1 overflowed"
    assert mm.verdict("asan|ubsan", 1, ubsan, IDS).startswith("caught (runtime error: pointer index")
    assert mm.verdict("asan|ubsan", 66, RACE, IDS).startswith("broken (expected asan|ubsan, got race")


def test_clean_build_must_pass_the_same_selection(monkeypatch):
    class R:
        def __init__(self, rc, out):
            self.returncode, self.stdout = rc, out

    runs = iter([R(0, "2 passed in 1s"), R(1, "FAILED x\n1 failed, 1 passed in 1s"), R(0, "1 passed, 1 skipped in 1s")])
    monkeypatch.setattr(mm, "_pytest", lambda *a: next(runs))
    monkeypatch.setattr(mm, "_clean", {})
    assert mm.clean_failure("tsan", "a", IDS) is None
    assert "rc=1" in mm.clean_failure("tsan", "b", IDS)
    assert "rc=0" in mm.clean_failure("tsan", "c", IDS)  # a selected test did not run
    assert mm.clean_failure("tsan", "d", []) == "-k 'd' selects no test"


def test_clean_runs_take_the_union_once_and_split_on_failure(monkeypatch):
    class R:
        def __init__(self, rc, out):
            self.returncode, self.stdout = rc, out

    sel = {"a": IDS[:1], "b": IDS[1:]}
    calls = []
    monkeypatch.setattr(mm, "selected", lambda build, t: sel[t])
    monkeypatch.setattr(mm, "_clean", {})
    monkeypatch.setattr(mm, "_pytest", lambda *a: calls.append(a) or R(0, "2 passed in 1s"))
    mm.clean_runs("asan", ["a", "b"])
    assert len(calls) == 1 and calls[0][-1] == "(a) or (b)"
    assert mm._clean == {("asan", "a"): None, ("asan", "b"): None}
    # the union fails: each selection alone, and only the failing one is recorded as such
    runs = iter([R(1, "FAILED x\n1 failed, 1 passed in 1s"), R(0, "1 passed in 1s"), R(1, "1 failed in 1s")])
    monkeypatch.setattr(mm, "_clean", {})
    monkeypatch.setattr(mm, "_pytest", lambda *a: next(runs))
    mm.clean_runs("tsan", ["a", "b"])
    assert mm._clean[("tsan", "a")] is None and "rc=1" in mm._clean[("tsan", "b")]


def _fake_mutants(tmp_path, monkeypatch, exit_codes, equivalent):
    """A mutants/ tree of one mutated module (two mutants of a long-signature function) and its
    verdicts, and an equivalence list, for tests/mutation_score.py."""
    import json

    import mutation_score as ms

    (tmp_path / "mutants" / "pkg").mkdir(parents=True, exist_ok=True)
    (tmp_path / "mutants" / "pkg" / "mod.py").write_text(
        "def x_f__mutmut_1(\n    a,\n    b,\n):\n    return a - b\n\n\n"
        "def x_f__mutmut_2(\n    a,\n    b,\n):\n    return None\n\n\n"
        "x_f__mutmut_mutants = {}\n"
    )
    codes = {f"pkg.mod.x_f__mutmut_{i}": c for i, c in exit_codes.items()}
    codes["pkg.mod.x_f__mutmut_9"] = 0  # a former mutant: no longer in the source
    (tmp_path / "mutants" / "pkg" / "mod.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    (tmp_path / "eq.txt").write_text(equivalent)
    monkeypatch.setattr(ms, "MUTANTS", str(tmp_path / "mutants"))
    monkeypatch.setattr(ms, "EQUIVALENT", str(tmp_path / "eq.txt"))
    return ms


def test_mutation_score_counts_what_exists_and_pins_each_equivalent(tmp_path, monkeypatch, capsys):
    ms = _fake_mutants(tmp_path, monkeypatch, {1: 1, 2: 0}, "pkg.mod.x_f__mutmut_2: why || return None\n")
    assert ms.main([]) == 0
    out = capsys.readouterr().out
    assert "pkg/mod.py" in out and "100.0%" in out and "x_f__mutmut_9" not in out
    # the same name now mutates another line: stale, scored as what it is (a survivor), and a failure
    ms = _fake_mutants(tmp_path, monkeypatch, {1: 1, 2: 0}, "pkg.mod.x_f__mutmut_2: why || return a * b\n")
    assert ms.main([]) == 1
    out = capsys.readouterr().out
    assert "stale: pkg.mod.x_f__mutmut_2" in out and "survived: pkg.mod.x_f__mutmut_2" in out
    # a listed equivalent that a test kills is counted killed, and its line named
    ms = _fake_mutants(tmp_path, monkeypatch, {1: 1, 2: 1}, "pkg.mod.x_f__mutmut_2: why || return None\n")
    assert ms.main([]) == 0
    assert "killed, though listed equivalent: pkg.mod.x_f__mutmut_2" in capsys.readouterr().out
    # a pin may name the original def line, and `!line` a line the mutant deletes
    bodies = ms.mutant_sources(str(tmp_path / "mutants" / "pkg" / "mod.py"))
    body = bodies["x_f__mutmut_1"]
    assert set(bodies) == {"x_f__mutmut_1", "x_f__mutmut_2"} and "return None" not in body
    assert body.startswith("def f(") and "return a - b" in body
    assert ms._pinned("!return a + b", body) and not ms._pinned("!return a - b", body)
    # an entry without its pinned line is refused
    (tmp_path / "eq.txt").write_text("pkg.mod.x_f__mutmut_2: why\n")
    with pytest.raises(SystemExit, match="expected `<mutant name>: <reason> || <mutated line>`"):
        ms.main([])
