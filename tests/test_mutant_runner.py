"""tests/cuda_emu_mutants.py counts a mutant as caught only by its expected catcher, after the
clean build passed the same selection; every other failure is "broken" (and fails the run)."""

import cuda_emu_mutants as mm

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


def test_assertion_counts_only_for_a_selected_test():
    ok = "FAILED tests/test_cuda.py::test_a[x] - AssertionError: differs\n1 failed in 3s"
    assert mm.verdict("assert", 1, ok, IDS) == "caught (assertion of test_a[x])"
    other = "FAILED tests/test_cuda.py::test_c - AssertionError: differs\n1 failed in 3s"
    assert mm.verdict("assert", 1, other, IDS).startswith("broken")
    crash = "FAILED tests/test_cuda.py::test_a[x] - RuntimeError: illegal\n1 failed in 3s"
    assert mm.verdict("assert", 1, crash, IDS).startswith("broken")
    assert mm.verdict("assert", 0, "2 passed in 3s", IDS) == "escaped"


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
