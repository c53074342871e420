"""`dualhead bench`: runs end to end, equality-checks against ultralytics before timing, and
reports an out-of-memory baseline (ultralytics on W3 at B = 128 on a GPU) instead of crashing."""

import dataclasses
import json

import pytest
import torch

from dualhead import bench
from dualhead.detector import cli


def test_first_call_reports_out_of_memory():
    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    assert bench.first_call(oom) == (None, "out of memory")
    assert bench.first_call(lambda: 3) == (3, None)


def test_bench_cli_small_run(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cli.main(
        [
            "bench",
            "--workloads",
            "W1",
            "--modes",
            "dual-compact,dual-dense",
            "--rounds",
            "1",
            "--min-time",
            "0.01",
            "--no-memory",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    impls = {r["impl"]: r for r in rows if r["mode"] == "dual-compact"}
    assert impls["dualhead"]["median_s"] > 0 and impls["reference"]["median_s"] > 0
    # compact rows are compared with ultralytics' dense call (timed in dual-dense)
    assert impls["dualhead"]["checked_against"] == impls["reference"]["checked_against"] == "ultralytics"
    assert impls["dualhead"]["speedup_vs_ultralytics"] > 1
    assert "W1" in capsys.readouterr().out


SMALL = ["bench", "--workloads", "W1", "--rounds", "1", "--min-time", "0.01", "--no-memory"]


def test_bench_refuses_a_missing_baseline(monkeypatch, tmp_path, capsys):
    """No ultralytics: an error, not timings without their equality check and speed-up."""
    monkeypatch.setattr(bench, "have_ultralytics", lambda: False)
    assert cli.main([*SMALL, "--json", str(tmp_path / "r.json")]) == 2
    assert "'ultralytics', which is not installed" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def _out_of_memory(monkeypatch, impl, wrong=False):
    """bench.make_fn with impl's call running out of memory; wrong: dualhead's o2o targets
    replaced by its o2m ones (an output that must be found unequal)."""
    real = bench.make_fn

    def make_fn(i, mode, *a):
        f = real(i, mode, *a)
        if i == impl and f is not None:

            def oom():
                raise torch.OutOfMemoryError("out of memory")

            return oom
        if i == "dualhead" and wrong:
            return lambda: dataclasses.replace(f(), o2o=f().o2m)
        return f

    monkeypatch.setattr(bench, "make_fn", make_fn)


def test_bench_without_baseline_output_checks_against_reference(monkeypatch, tmp_path):
    """ultralytics out of memory: dualhead is still checked (against dualhead.reference) and
    gets no speed-up; a wrong dualhead output is then found as before."""
    _out_of_memory(monkeypatch, "ultralytics")
    out = tmp_path / "r.json"
    assert cli.main([*SMALL, "--modes", "dual-compact", "--json", str(out)]) == 0
    rows = {r["impl"]: r for r in json.loads(out.read_text())["rows"]}
    assert "ultralytics" not in rows  # compact rows: ultralytics' dense call is their check, timed in dual-dense
    assert rows["dualhead"]["checked_against"] == "reference" and rows["dualhead"]["speedup_vs_ultralytics"] is None
    _out_of_memory(monkeypatch, "ultralytics", wrong=True)
    assert cli.main([*SMALL, "--modes", "dual-compact", "--json", str(out)]) == 1
    rows = {r["impl"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["dualhead"]["note"].startswith("NOT EQUAL to reference")


def test_bench_gives_no_speedup_to_an_unequal_row(monkeypatch, tmp_path):
    def check_equal(impl_out, ref_out, what):
        if "dualhead" in what:
            raise AssertionError("planted difference")

    monkeypatch.setattr(bench, "check_equal", check_equal)
    out = tmp_path / "r.json"
    assert cli.main([*SMALL, "--modes", "dual-dense", "--json", str(out)]) == 1
    rows = {r["impl"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["dualhead"]["speedup_vs_ultralytics"] is None and rows["dualhead"]["checked_against"] is None
    assert rows["reference"]["speedup_vs_ultralytics"] > 0 and rows["ultralytics"]["checked_against"] == "itself"


def test_bench_oom_row_is_reported(monkeypatch, tmp_path, capsys):
    _out_of_memory(monkeypatch, "reference")
    out = tmp_path / "r.json"
    rc = cli.main(
        [
            "bench",
            "--workloads",
            "W1",
            "--modes",
            "dual-compact",
            "--impls",
            "dualhead,reference",
            "--rounds",
            "1",
            "--min-time",
            "0.01",
            "--no-memory",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    ref = [r for r in json.loads(out.read_text())["rows"] if r["impl"] == "reference"][0]
    assert ref["median_s"] is None and ref["note"] == "out of memory"
    assert "OOM" in capsys.readouterr().out


def test_bench_rows_survive_a_killed_run(monkeypatch, tmp_path, capsys):
    """Each row is printed, and the JSON written, as soon as its group is timed: a run killed
    in its second workload (the GPU script's 10-minute calls) keeps the first."""
    real = bench.workload_batch

    def workload_batch(wid, *a, **k):
        if wid == "W4":
            raise KeyboardInterrupt
        return real(wid, *a, **k)

    monkeypatch.setattr(bench, "workload_batch", workload_batch)
    out = tmp_path / "r.json"
    rc = cli.main(
        [
            "bench",
            "--workloads",
            "W1,W4",
            "--modes",
            "dual-compact",
            "--impls",
            "dualhead",
            "--rounds",
            "1",
            "--min-time",
            "0.01",
            "--no-memory",
            "--json",
            str(out),
        ]
    )
    assert rc == 130  # the CLI's clean stop
    rows = json.loads(out.read_text())["rows"]
    assert [(r["workload"], r["impl"]) for r in rows] == [("W1", "dualhead")]
    assert "W1          dual-compact    dualhead" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_train_loop(tmp_path, capsys):
    """`bench --train-loop`: the data pipeline (one process, and the default workers: none on
    CPU), the trainer's step, its up-front render on all cores, the whole loop and an epoch-end
    evaluation, each measured and written to the JSON."""
    out = tmp_path / "loop.json"
    assert cli.main(["bench", "--train-loop", "--loop-images", "64", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert res["workers"] == 0 and set(rows) == {
        "data, 0 worker(s)",
        "step (batch in memory)",
        "prerender (all cores)",
        "loop (loader + step)",
        "evaluation (per epoch)",
    }
    assert all(rows[k]["first_epoch"] > 0 and rows[k]["later_epochs"] > 0 for k in rows if k.startswith("data"))
    assert rows["step (batch in memory)"]["img_s"] > 0 and 0 <= rows["loop (loader + step)"]["data_wait"] < 1
    assert rows["prerender (all cores)"]["img_s"] > 0 and rows["prerender (all cores)"]["processes"] >= 1
    assert rows["evaluation (per epoch)"]["seconds"] > 0 and rows["evaluation (per epoch)"]["images"] == 200
    assert "evaluation (per epoch)" in capsys.readouterr().out
