"""`dualhead export` and `dualhead predict` beyond still images: the exported one-to-one graph
(ONNX with onnxruntime, TorchScript, OpenVINO) gives `dualhead predict`'s detections, the same
classes in the same order, boxes within 1e-3 px; videos in, an annotated video and per-frame
detections out; COCO results JSON that pycocotools scores."""

import json
import subprocess
import sys

import av
import numpy as np
import pytest
import torch

from dualhead.detector.cli import main
from dualhead.detector.data import ShapesDataset, as_float
from dualhead.detector.export import EndToEnd, differences, export, run_exported
from dualhead.detector.nn import Detector
from dualhead.detector.nn.postprocess import topk_all
from dualhead.detector.predict import detect, predict, unletterbox
from dualhead.detector.train import TrainConfig, train
from dualhead.detector.train.checkpoint import load_model

TINY = dict(data="shapes-easy", imgsz=64, width=0.0625, train_len=64, val_len=8, batch=16, workers=0, epochs=2)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(**TINY, out=str(out)))
    return out / "best.pt"


def _images(n, imgsz=64):
    ds = ShapesDataset("val", n, imgsz)
    return as_float(torch.stack([torch.from_numpy(ds[i][0].copy()).permute(2, 0, 1) for i in range(n)]))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "dualhead.detector.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "openvino"])
def test_exported_graph_gives_predicts_detections(weights, tmp_path, fmt):
    """At batch 1 and at batch 5 (the batch is dynamic): predict's detections above its score
    threshold are the exported graph's first rows, same classes, same order, boxes within 1e-3 px."""
    path, imgsz = export(weights, fmt, tmp_path / f"m.{fmt}", max_det=50)
    assert imgsz == 64
    model, _ = load_model(weights)
    for n in (1, 5):
        x = _images(n)
        (got,) = run_exported(path, x.numpy())
        assert got.shape == (n, 50, 6)
        for b, want in enumerate(detect(model, x, conf=0.25, max_det=50)):
            want = want.numpy()
            assert len(want) > 0  # a trained model finds something here: the comparison is not empty
            rows = got[b][got[b][:, 4] > 0.25]
            assert len(rows) == len(want), (rows, want)
            assert differences(want, rows, min_score=0.0) is None
            np.testing.assert_array_equal(rows[:, 5], want[:, 5])
            np.testing.assert_allclose(rows[:, :4], want[:, :4], atol=1e-3, rtol=0)


def test_fixed_batch_and_the_o2m_outputs(weights, tmp_path):
    path, _ = export(weights, "onnx", tmp_path / "fixed.onnx", max_det=7, batch=3, dynamic=False, with_o2m=True)
    dets, boxes, scores = run_exported(path, _images(3).numpy())
    assert dets.shape == (3, 7, 6) and boxes.shape == (3, 84, 4) and scores.shape[:2] == (3, 84)
    import onnxruntime as ort

    with pytest.raises(Exception, match="images"):  # the batch is fixed at 3
        ort.InferenceSession(str(path)).run(None, {"images": _images(2).numpy()})
    # the o2m output is the model's own decoded head output
    model, _ = load_model(weights)
    with torch.no_grad():
        want = model(_images(3), branches=("o2m",))["o2m"]
    np.testing.assert_allclose(boxes, want[0].numpy(), atol=1e-3)


def test_the_graph_is_the_decoding_predict_runs(weights):
    """EndToEnd is the model plus topk_all, the function predict's decoding filters: the same
    tensors, bitwise, in PyTorch."""
    model, _ = load_model(weights)
    x = _images(2)
    with torch.no_grad():
        got = EndToEnd(model, max_det=20)(x)
        want = topk_all(*model(x, branches=("o2o",))["o2o"], 20)
    assert torch.equal(got, want)


def test_export_mistakes_are_one_line(weights, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):  # argparse: exit 2 naming the choices
        main(["export", "--weights", str(weights), "--format", "tflite"])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    assert main(["export", "--weights", str(tmp_path / "none.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    o2m = Detector(5, 0.0625, ("o2m",), 64)  # an o2m-only model's checkpoint: the fields load_model reads
    torch.save({"model_config": o2m.config, "model": o2m.state_dict(), "ema": None}, tmp_path / "o2m.pt")
    assert main(["export", "--weights", str(tmp_path / "o2m.pt")]) == 2
    assert "no one-to-one head" in capsys.readouterr().err
    assert main(["export", "--weights", str(weights), "--out", str(tmp_path / "cli.onnx")]) == 0
    out = capsys.readouterr().out
    assert "ONNX opset 18; no NMS" in out and "(batch, 3, 64, 64)" in out and "(batch, 300, 6)" in out
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "onnxruntime" else real(m, *a))
    assert main(["export", "--weights", str(weights), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "--format onnx needs onnxruntime: pip install 'dualhead[export]'" in capsys.readouterr().err


def _clip(path, frames=11, imgsz=64, fps=5):
    ds = ShapesDataset("val", frames, imgsz)
    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=fps)
    s.width, s.height, s.pix_fmt = imgsz, imgsz, "yuv420p"
    for i in range(frames):
        for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(ds[i][0]), format="rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path


def test_predict_on_a_video(weights, tmp_path):
    clip = _clip(tmp_path / "clip.mp4")
    paths = predict(weights, str(clip), tmp_path / "out", conf=0.0, max_det=5, limit=None, save_json=True)
    assert [p.name for p in paths] == ["clip_pred.mp4", "clip_pred.jsonl", "predictions.json"]
    lines = [json.loads(x) for x in (tmp_path / "out" / "clip_pred.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(11)) and lines[3]["time_s"] == 0.6
    assert all(len(r["detections"]) == 5 for r in lines)  # conf 0: max_det each
    with av.open(str(paths[0])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    assert len(frames) == 11 and frames[0].shape == (64, 64, 3)
    # the detections of a frame are the model's on that decoded frame (64 x 64: no letterbox)
    with av.open(str(clip)) as c:
        first = next(iter(c.decode(c.streams.video[0]))).to_ndarray(format="rgb24")
    model, _ = load_model(weights)
    want = detect(model, torch.from_numpy(first.copy()).permute(2, 0, 1)[None].float() / 255, 0.0, 5)[0]
    want = unletterbox(want, (1.0, 0, 0), 64, 64)  # the frame's own pixels, clipped to it
    np.testing.assert_allclose(np.array(lines[0]["detections"])[:, :4], want[:, :4].numpy(), atol=2e-3)
    coco = json.loads(paths[2].read_text())
    assert len(coco) == 55 and {r["image_id"] for r in coco} == set(range(11))
    # --limit: frames at most
    r = cli("predict", "--weights", str(weights), "--source", str(clip), "--out", str(tmp_path / "o2"), "--limit", "4")
    assert r.returncode == 0 and "(4 frames)" in r.stdout, r.stderr


def test_a_source_that_yields_nothing_is_an_error(weights, tmp_path):
    for source, msg in [
        (tmp_path / "none.mp4", "no such video file"),
        ("7", "is not webcam /dev/video7"),
        (tmp_path, "must be an image"),
    ]:
        r = cli("predict", "--weights", str(weights), "--source", str(source), "--out", str(tmp_path / "o"))
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
    (tmp_path / "bad.png").write_bytes(b"not a png")
    r = cli("predict", "--weights", str(weights), "--source", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no image could be read" in r.stderr and "a video" in r.stderr
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    r = cli(
        "predict", "--weights", str(weights), "--source", str(tmp_path / "broken.mp4"), "--out", str(tmp_path / "o")
    )
    assert r.returncode == 2 and "broken.mp4" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_save_json_is_coco_results_that_pycocotools_scores(weights, tmp_path):
    """--data a COCO JSON --save-json: the file's own image and category ids, boxes in image
    pixels; pycocotools loads them against the file and evaluates."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from dualhead.detector.data.export import export as export_data

    d = export_data("shapes-easy", tmp_path / "coco", imgsz=64, train_len=4, val_len=6, fmt="coco")
    ann = d / "annotations" / "instances_val.json"
    r = cli("predict", "--weights", str(weights), "--data", str(ann), "--out", str(tmp_path / "p"), "--save-json")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "p" / "predictions.json").read_text())
    gt = json.loads(ann.read_text())
    assert res and {x["image_id"] for x in res} <= {im["id"] for im in gt["images"]}
    assert {x["category_id"] for x in res} <= {c["id"] for c in gt["categories"]}
    coco = COCO(str(ann))
    ev = COCOeval(coco, coco.loadRes(str(tmp_path / "p" / "predictions.json")), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert 0 <= ev.stats[0] <= 1


@pytest.mark.slow
def test_bench_infer_times_both_pipelines(weights, monkeypatch, tmp_path):
    """dualhead bench --infer on a tiny model: each runtime, size and batch has the o2o pipeline
    and the o2m + NMS one at both score thresholds, split into model and post-processing."""
    from dualhead.detector.experiments import bench_infer

    monkeypatch.setattr(bench_infer, "SIZES", (64,))
    monkeypatch.setattr(bench_infer, "BATCHES", (1, 2))
    model, _ = load_model(weights)
    rows = bench_infer.measure(model, min_time=0.0, threads=1, log=lambda *_: None)
    assert len(rows) == 2 * 2 * 3  # runtimes x batches x pipelines
    assert {r["runtime"] for r in rows} == {"torch", "onnxruntime"}
    for r in rows:
        assert r["model_ms"] > 0 and r["post_ms"] > 0 and 0 < r["post_share"] < 1
        assert r["total_ms"] == pytest.approx(r["model_ms"] + r["post_ms"])
    o2o = [r for r in rows if r["pipeline"].startswith("o2o")]
    assert all(r["one_graph_ms"] > 0 for r in o2o)
    loose = [r["kept_per_image"] for r in rows if r["pipeline"].endswith("0.001")]
    strict = [r["kept_per_image"] for r in rows if r["pipeline"].endswith("0.25")]
    assert all(a >= b for a, b in zip(loose, strict))
    r = cli("bench", "--infer", "--weights", str(tmp_path / "none.pt"))
    assert r.returncode == 2 and "no checkpoint" in r.stderr
