"""`dualhead bench --infer`: inference latency per image of the two ways to deploy the detector,
split into the model and its post-processing:

- o2o end to end: the one-to-one head and its top-k decoding (`dualhead export`'s graph), no NMS;
  model = the network up to the head's decoded boxes and scores, post = the top-k decoding;
- o2m + NMS: the one-to-many head, then torchvision's per-class NMS on every (anchor, class)
  above conf (how ultralytics deploys a YOLOv8: the graph ends at the boxes and scores, NMS runs
  after it); post = the score filter and NMS.

Each in PyTorch (eager) and in onnxruntime (CPU), at batch 1 and 8, 256 and 640 px, on the
embedded validation images (a trained model's scores, so NMS sees the candidates it would in
use: at 640 px the 256 px-trained weights run on larger images). Medians of repeated runs after
a warm-up; the machine's threads as --threads. ultralytics' own YOLOv10n / YOLOv8n ONNX exports
(random weights: their NMS input is not a trained model's) are timed beside them when its
exporter runs offline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from dualhead.bench import machine
from dualhead.detector.export import EndToEnd, require_format, sample_images, to_onnx
from dualhead.detector.nn.postprocess import nms_detections, topk_all
from dualhead.detector.train.checkpoint import load_model

SIZES, BATCHES = (256, 640), (1, 8)
MAX_DET, CONF, IOU = 300, 0.25, 0.7  # predict's and ultralytics' deployment settings


class Decode(nn.Module):
    """The o2o head's top-k decoding alone: (boxes, scores) -> detections (B, MAX_DET, 6)."""

    def __init__(self):
        super().__init__()
        self.eval()

    def forward(self, boxes, scores):
        return topk_all(boxes, scores, MAX_DET)


class Raw(nn.Module):
    """One head's decoded output (boxes (B, N, 4) pixels, class probabilities (B, N, C))."""

    def __init__(self, model, branch: str):
        super().__init__()
        self.model, self.branch = model, branch
        self.eval()

    def forward(self, images):
        return self.model(images, branches=(self.branch,))[self.branch]


def median_ms(fn, min_time: float, min_runs: int = 5) -> float:
    for _ in range(2):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _ort_session(path: Path, threads: int):
    import onnxruntime as ort  # optional (the export extra): checked by run()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def pipelines(model, imgsz: int, tmp: Path, threads: int) -> dict:
    """{runtime: {part: callable}}: the o2o graph end to end, each head up to its decoded output,
    and the o2o top-k decoding alone (on the o2o head's outputs)."""
    sample = sample_images(imgsz, 1)
    o2o = Raw(model, "o2o")
    with torch.no_grad():
        raw = tuple(o2o(sample))
    out = {"torch": {}, "onnxruntime": {}}
    for name, module, arg, inputs, names in (
        ("o2o_e2e", EndToEnd(model, MAX_DET), sample, ("images",), ["detections"]),
        ("o2o_model", o2o, sample, ("images",), ["boxes", "scores"]),
        ("o2m_model", Raw(model, "o2m"), sample, ("images",), ["boxes", "scores"]),
        ("o2o_decode", Decode(), raw, ("boxes", "scores"), ["detections"]),
    ):
        path = tmp / f"{name}_{imgsz}.onnx"
        to_onnx(module, arg, path, True, names, inputs)
        sess = _ort_session(path, threads)
        out["torch"][name] = torch.no_grad()(module)
        out["onnxruntime"][name] = lambda *x, s=sess, k=inputs: s.run(None, {n: t.numpy() for n, t in zip(k, x)})
    return out


def _nms(outputs, conf: float) -> list:
    boxes, scores = (torch.as_tensor(o) for o in outputs)
    return nms_detections(boxes, scores, MAX_DET, conf, IOU)


def measure(model, min_time: float, threads: int, log=print) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for imgsz in SIZES:
            parts = pipelines(model, imgsz, Path(tmp), threads)
            images = sample_images(imgsz, max(BATCHES))
            for runtime, fns in parts.items():
                for b in BATCHES:
                    x = images[:b]
                    graph = median_ms(lambda f=fns["o2o_e2e"], x=x: f(x), min_time)
                    o2o = median_ms(lambda f=fns["o2o_model"], x=x: f(x), min_time)
                    o2m = median_ms(lambda f=fns["o2m_model"], x=x: f(x), min_time)
                    with torch.no_grad():
                        raw_o2o = tuple(torch.as_tensor(t) for t in parts["torch"]["o2o_model"](x))
                        raw_o2m = parts["torch"]["o2m_model"](x)
                    decode = median_ms(lambda f=fns["o2o_decode"], r=raw_o2o: f(*r), min_time)
                    timed = [("o2o end to end, no NMS", o2o, decode, None)]
                    for conf in (CONF, 0.001):
                        nms = median_ms(lambda r=raw_o2m, c=conf: _nms(r, c), min_time)
                        kept = sum(len(d) for d in _nms(raw_o2m, conf)) / b
                        timed.append((f"o2m + NMS, conf {conf}", o2m, nms, kept))
                    for pipe, m, p, kept in timed:
                        row = dict(
                            imgsz=imgsz,
                            batch=b,
                            runtime=runtime,
                            pipeline=pipe,
                            model_ms=m / b,
                            post_ms=p / b,
                            total_ms=(m + p) / b,
                            post_share=p / (m + p),
                        )
                        if kept is None:
                            row["one_graph_ms"] = graph / b  # the exported graph, model and decoding together
                        else:
                            row["kept_per_image"] = kept
                        rows.append(row)
                        log(format_row(row))
    return rows


def ultralytics_rows(min_time: float, threads: int, log=print) -> list[dict]:
    """ultralytics' own YOLOv10n (end to end) and YOLOv8n (+ its NMS) exported to ONNX by its
    exporter from the model YAML (no download), timed as above; [] with a note when it cannot."""
    try:
        from ultralytics import YOLO  # optional (the test extra)
        from ultralytics.utils import LOGGER
        from ultralytics.utils.nms import non_max_suppression
    except ImportError as e:
        log(f"ultralytics rows skipped: {e}")
        return []
    rows = []
    LOGGER.setLevel(logging.WARNING)  # its exporter's progress lines
    with tempfile.TemporaryDirectory() as tmp, _inside(tmp):  # it writes the .onnx beside the model "file"
        for name in ("yolov10n", "yolov8n"):
            for imgsz in SIZES:
                try:
                    m = YOLO(f"{name}.yaml")
                    path = Path(m.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=False))
                except Exception as e:  # offline: a requirement it would download, a missing tool
                    log(f"ultralytics {name} export at {imgsz} px failed: {type(e).__name__}: {e}")
                    continue
                sess = _ort_session(path, threads)
                images = sample_images(imgsz, max(BATCHES))
                for b in BATCHES:
                    x = images[:b].numpy()
                    feed = {sess.get_inputs()[0].name: x}
                    model_ms = median_ms(lambda s=sess, f=feed: s.run(None, f), min_time)
                    post_ms = 0.0
                    if name == "yolov8n":
                        raw = torch.from_numpy(sess.run(None, feed)[0])
                        post_ms = median_ms(lambda r=raw: non_max_suppression(r, CONF, IOU, max_det=MAX_DET), min_time)
                    row = dict(
                        imgsz=imgsz,
                        batch=b,
                        runtime="onnxruntime",
                        pipeline=f"ultralytics {name}" + (" + NMS" if post_ms else " end to end"),
                        model_ms=model_ms / b,
                        post_ms=post_ms / b,
                        total_ms=(model_ms + post_ms) / b,
                        post_share=post_ms / (model_ms + post_ms),
                    )
                    rows.append(row)
                    log(format_row(row))
    return rows


@contextlib.contextmanager
def _inside(folder):
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def format_row(r: dict) -> str:
    share = f"{r['post_share']:.0%}"
    return (
        f"{r['imgsz']:>5} {r['batch']:>5}  {r['runtime']:<12} {r['pipeline']:<32} {r['model_ms']:>9.2f} "
        f"{r['post_ms']:>9.2f} {r['total_ms']:>9.2f} {share:>6}"
    )


def run(args) -> int:
    require_format("onnx", "--infer")  # the graphs it times are ONNX exports run by onnxruntime
    weights = Path(args.weights)
    if not weights.is_file():
        raise ValueError(f"--weights {str(weights)!r}: no checkpoint (train one first: make train)")
    torch.set_num_threads(args.threads)
    model, _ = load_model(weights)
    print(
        f"{'px':>5} {'batch':>5}  {'runtime':<12} {'pipeline':<32} {'model ms':>9} {'post ms':>9} {'total ms':>9} {'post %':>6}"
    )
    rows = measure(model, args.min_time, args.threads)
    rows += ultralytics_rows(args.min_time, args.threads)
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M"), machine=machine(), torch=torch.__version__, threads=args.threads)
    meta["weights"] = str(weights)
    Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    print(f"per image, medians; wrote {args.json}")
    return 0
