"""`dualhead ablate` over seeds (a process per run, mean +- std, resumable), `dualhead export-data`,
and the ultralytics anchor, on tiny schedules."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dualhead.detector.data import CLASSES, ShapesDataset, YoloDataset
from dualhead.detector.data.export import export_yolo
from dualhead.detector.experiments.ablate import ablate, format_table, mean_std, parse_list, plan
from dualhead.detector.train import TrainConfig

TINY = dict(data="shapes-easy", imgsz=64, train_len=48, val_len=16, epochs=1, batch=8, workers=0, eval_max_det=20)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "dualhead.detector.cli", *args], capture_output=True, text=True)


def test_mean_std():
    assert mean_std([1.0, 2.0, 4.0]) == (pytest.approx(7 / 3), pytest.approx(statistics.stdev([1, 2, 4])))
    assert mean_std([0.5]) == (0.5, None)  # one seed: no error bar, not a zero one
    m, s = mean_std([])
    assert m != m and s is None
    assert mean_std([1.0, float("nan"), 3.0]) == (2.0, pytest.approx(2**0.5))


def test_parse_list_names_the_option():
    assert parse_list("dual, o2m,", ("o2m", "dual"), "--configs") == ["dual", "o2m"]
    with pytest.raises(ValueError, match=r"--configs: unknown 'duel'; choose from o2m, dual"):
        parse_list("duel", ("o2m", "dual"), "--configs")


def test_seeds_summary_and_rerun(tmp_path):
    out = tmp_path / "abl"
    summary = ablate(TrainConfig(**TINY), out, configs=("dual",), seeds=2, jobs=2)
    data = json.loads((out / "ablation.json").read_text())
    runs = data["runs"]
    assert [(r["key"], r["seed"]) for r in runs] == [("dual", 0), ("dual", 1)]
    # two seeds are two different runs (initialisation and data order)
    assert runs[0]["o2m_box"] != runs[1]["o2m_box"]
    (row,) = summary
    assert row["n"] == 2
    for k in ("map", "top1", "fp_dup", "gap"):
        vals = [r[k] for r in runs]
        assert row[k][0] == pytest.approx(sum(vals) / 2)
        assert row[k][1] == pytest.approx(statistics.stdev(vals))
    assert "dual, consistent (no NMS) | 2 |" in (out / "ablation.md").read_text()
    assert (out / "ablation.png").stat().st_size > 10_000  # per-epoch curves, mean and range over seeds
    # the same command again trains nothing (finished runs are read back), nor does --report
    stamp = (out / "dual" / "seed0" / "results.csv").stat().st_mtime_ns
    again = ablate(TrainConfig(**TINY), out, configs=("dual",), seeds=2, jobs=2)
    assert again == summary
    assert (out / "dual" / "seed0" / "results.csv").stat().st_mtime_ns == stamp
    part = ablate(TrainConfig(**TINY), out, configs=("dual", "o2o"), seeds=3, train=False)
    assert [(r["key"], r["n"]) for r in part] == [("dual", 2), ("o2o", 0)]
    assert "| o2o only (no NMS) | 0 | — |" in format_table(part)


@pytest.mark.slow
def test_a_failing_run_is_reported_and_the_rest_go_on(tmp_path):
    out = tmp_path / "abl"
    (out / "o2o" / "seed0").mkdir(parents=True)
    (out / "o2o" / "seed0" / "last.pt").write_bytes(b"not a checkpoint")  # its resume must fail
    with pytest.raises(ValueError, match=r"1 run\(s\) failed: .*o2o/seed0/train.log"):
        ablate(TrainConfig(**TINY), out, configs=("o2o", "o2m"), seeds=1, jobs=1)
    rows = json.loads((out / "ablation.json").read_text())["summary"]
    assert [(r["key"], r["n"]) for r in rows] == [("o2o", 0), ("o2m", 1)]


def test_cli_ablate_bad_options_are_one_line():
    r = cli("ablate", "--configs", "dual,nope")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--configs: unknown 'nope'" in r.stderr
    r = cli("ablate", "--configs", "", "--anchors", "")
    assert r.returncode == 2 and "nothing to run" in r.stderr
    r = cli("ablate", "--seeds", "0")
    assert r.returncode == 2 and "--seeds must be an int >= 1" in r.stderr


def test_export_reads_back_as_the_same_data(tmp_path):
    out = export_yolo("shapes", tmp_path / "y", imgsz=64, train_len=6, val_len=4)
    assert (out / "classes.txt").read_text().split() == list(CLASSES)
    for split, n in (("train", 6), ("val", 4)):
        orig = ShapesDataset(split, n, 64)
        back = YoloDataset(out, split, 64)
        assert len(back) == n and back.names == orig.names
        for i in range(n):
            (a, ba, la), (b, bb, lb) = orig[i], back[i]
            np.testing.assert_array_equal(a, b)  # PNG: lossless
            np.testing.assert_allclose(ba, bb, atol=1e-3)
            np.testing.assert_array_equal(la, lb)
    assert "names:\n  0: circle" in (out / "data.yaml").read_text()
    with pytest.raises(ValueError, match="already holds an exported dataset"):
        export_yolo("shapes", out, imgsz=64, train_len=6, val_len=4)
    r = cli("export-data", "--data", str(tmp_path), "--out", str(tmp_path / "z"))
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.slow
def test_ultralytics_anchor_runs_and_is_evaluated_by_our_code(tmp_path):
    pytest.importorskip("ultralytics")
    out = tmp_path / "abl"
    (row,) = ablate(TrainConfig(**TINY), out, configs=(), anchors=("yolov10n",), seeds=1, jobs=1)
    assert row["n"] == 1 and row["name"].startswith("ultralytics YOLOv10n")
    res = json.loads((out / "ablation.json").read_text())["runs"][0]
    for k in ("map", "map50", "map_o2o_nms", "prec", "rec"):
        assert 0 <= res[k] <= 1, (k, res[k])
    assert res["map"] <= res["map50"] and res["fp_dup"] >= 0 and res["fp_dup"] == int(res["fp_dup"])
    assert res["time_s"] > 0
    weights = out / "yolov10n" / "seed0" / "ultralytics" / "weights" / "last.pt"
    images = sorted((out / "data_yolo" / "images" / "val").glob("*.png"))
    assert len(images) == TINY["val_len"] and images[-1].name == "000015.png"  # the exported val split
    # the row is our evaluation of ultralytics' last weights: the same numbers again from them
    from dualhead.detector.data import build_dataset
    from dualhead.detector.evaluate import coco_ground_truth, detection_metrics
    from dualhead.detector.experiments.ultralytics_anchor import detections

    gt = coco_ground_truth(build_dataset("shapes-easy", "val", TINY["imgsz"], TINY["val_len"]))
    again = detection_metrics(
        gt, detections(weights, images, TINY["imgsz"], TINY["eval_max_det"], "cpu"), nms_free=True
    )
    for k in ("map", "map50", "prec", "rec", "fp_dup"):
        assert res[k] == pytest.approx(again[k], abs=1e-6), (k, res[k], again[k])
    assert res["map_o2o_nms"] == pytest.approx(again["map_nms"], abs=1e-6)


def test_anchor_workers_follow_dualhead_train_when_unset():
    """--workers unset (the default) reached ultralytics as None, which it refuses: every anchor
    run of a default `dualhead ablate --anchors` failed. Unset now means dualhead train's rule."""
    from dualhead.detector.experiments.ultralytics_anchor import anchor_workers

    cpu = torch.device("cpu")
    assert anchor_workers(None, cpu) == 1 and anchor_workers(0, cpu) == 0 and anchor_workers(3, cpu) == 3
    runs = plan(TrainConfig(), Path("/tmp/x"), [], 1, ["yolov8n"])
    assert runs[0]["spec"]["workers"] is None and isinstance(anchor_workers(runs[0]["spec"]["workers"], cpu), int)
