"""`dualhead export`: a trained model as one graph that runs without Python and without NMS.

The graph is the one-to-one head and its decoding, the function `dualhead predict` runs
(nn.postprocess.topk_all): images (B, 3, imgsz, imgsz) float in [0, 1], letterboxed as predict
letterboxes them -> detections (B, max_det, 6) x1 y1 x2 y2 score class, in input pixels, best
first, no score threshold (keep the rows above yours). The batch is dynamic unless a fixed one is
asked for; the image size is the model's (its anchors are constants of the graph). An o2m-only
model has no NMS-free head and is refused. with_o2m adds the one-to-many head's raw decoded
output (boxes (B, N, 4), class probabilities (B, N, C)) for users who run their own NMS.

Formats (ultralytics' names): onnx (torch.onnx's exporter, opset 18, checked by onnx and run by
onnxruntime), torchscript (torch.jit.trace), openvino (openvino.convert_model of the ONNX graph,
saved as .xml + .bin). Each export is run once on the exporting machine on a sample batch and
compared with the PyTorch model before it is kept.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dualhead.detector.data import ShapesDataset, stack_images
from dualhead.detector.nn.postprocess import topk_all
from dualhead.detector.train.checkpoint import ensure_writable, load_model

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript", "openvino": "_openvino"}
OPSET = 18
# what an exported graph may differ from the PyTorch model by: another runtime's kernels round
# differently (convolutions, softmax), far below a pixel or a visible score change
BOX_TOL_PX, SCORE_TOL = 1e-3, 1e-4


class EndToEnd(nn.Module):
    """The deployed computation: the model's o2o head decoded NMS-free into (B, max_det, 6)."""

    def __init__(self, model, max_det: int = 300, with_o2m: bool = False):
        super().__init__()
        if "o2o" not in model.head.branches:
            raise ValueError(
                "--weights: this model has no one-to-one head (trained with --mode o2m): it needs NMS, "
                "which an NMS-free export does not contain; export a dual or o2o model"
            )
        if with_o2m and "o2m" not in model.head.branches:
            raise ValueError("--with-o2m: this model has no one-to-many head (trained with --mode o2o)")
        self.model, self.max_det, self.with_o2m = model, max_det, with_o2m
        self.eval()

    def forward(self, images):
        out = self.model(images, branches=("o2o", "o2m") if self.with_o2m else ("o2o",))
        dets = topk_all(*out["o2o"], self.max_det)
        return (dets, *out["o2m"]) if self.with_o2m else dets


def output_names(with_o2m: bool) -> list[str]:
    return ["detections", "o2m_boxes", "o2m_scores"] if with_o2m else ["detections"]


def to_onnx(module, sample, path: Path, dynamic: bool, names: list[str], inputs=("images",)) -> None:
    """module traced on sample (a tensor, or a tuple of them called inputs) into an ONNX file at
    path (opset OPSET, the batch dynamic or fixed), outputs called names; checked by onnx."""
    sample = sample if isinstance(sample, tuple) else (sample,)
    # the batch dimension is called "batch" (one per input when there are several: torch.export
    # finds that they are equal, and one Dim shared by name draws a warning)
    dims = {k: "batch" if len(inputs) == 1 else f"batch_{k}" for k in inputs}
    shapes = {k: {0: torch.export.Dim(dims[k], min=1, max=1024)} for k in inputs} if dynamic else None
    prog = torch.onnx.export(
        module,
        sample,
        input_names=list(inputs),
        output_names=names,
        opset_version=OPSET,
        dynamic_shapes=shapes,
        dynamo=True,
        verbose=False,
    )
    prog.save(str(path))
    import onnx  # optional (the export extra): found by export()'s check of the format's modules

    onnx.checker.check_model(str(path), full_check=True)


def _torchscript(module, sample, path: Path) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(module, sample, check_trace=False)
    traced.save(str(path))


def _openvino(module, sample, path: Path, dynamic: bool, with_o2m: bool) -> None:
    import openvino as ov  # optional (the export extra)

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        to_onnx(module, sample, onnx_path, dynamic, output_names(with_o2m))
        ov_model = ov.convert_model(str(onnx_path))
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    ov.save_model(ov_model, str(path / "model.xml"), compress_to_fp16=False)  # fp32 weights: the checked outputs


def run_exported(path, images: np.ndarray) -> list[np.ndarray]:
    """The outputs of an exported model on images (B, 3, H, W) float32, as numpy arrays: onnx
    with onnxruntime (CPU), torchscript with torch.jit.load, openvino with its runtime (CPU)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort  # optional (the export extra)

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {"images": images})
    if path.suffix == ".torchscript":
        m = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            out = m(torch.from_numpy(images))
        return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
    if path.is_dir() and (path / "model.xml").is_file():
        import openvino as ov  # optional (the export extra)

        # fp32: on CPUs with bf16 units OpenVINO computes in bf16 unless told (3e-4 off in scores)
        compiled = ov.Core().compile_model(str(path / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        res = compiled(images)
        return [res[o] for o in compiled.outputs]
    raise ValueError(f"{path}: not an exported dualhead model (.onnx, .torchscript or an _openvino folder)")


def require_format(fmt: str, option: str | None = None) -> None:
    """The format's Python packages, checked before any work (a one-line error naming them and
    `option`, by default --format fmt)."""
    mods = {"onnx": ["onnx", "onnxscript", "onnxruntime"], "openvino": ["onnx", "onnxscript", "openvino"]}
    missing = [m for m in mods.get(fmt, []) if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(
            f"{option or '--format ' + fmt} needs {', '.join(missing)}: pip install 'dualhead[export]' "
            "(onnx, onnxscript, onnxruntime, openvino)"
        )


def export(
    weights,
    fmt: str = "onnx",
    out=None,
    max_det: int = 300,
    batch: int = 1,
    dynamic: bool = True,
    with_o2m: bool = False,
    check_images: torch.Tensor | None = None,
) -> tuple[Path, int]:
    """Exports best.pt / last.pt to `fmt`; returns (the written path: a file, or a folder for
    openvino; the input image size). out: the path to write (default: beside the weights, ultralytics' naming). batch:
    the sample batch traced (and the fixed batch when dynamic is False). check_images: the
    images (B, 3, imgsz, imgsz) in [0, 1] the export is compared on (default: the embedded
    validation images)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not (isinstance(max_det, int) and max_det >= 1):
        raise ValueError(f"--max-det must be an int >= 1, got {max_det!r}")
    if not (isinstance(batch, int) and batch >= 1):
        raise ValueError(f"--batch must be an int >= 1, got {batch!r}")
    require_format(fmt)
    model, _ = load_model(weights, "cpu")
    module = EndToEnd(model, max_det, with_o2m)
    imgsz = model.config["imgsz"]
    weights = Path(weights)
    path = Path(out) if out else weights.with_name(weights.stem + FORMATS[fmt])
    ensure_writable(path.parent, "--out")
    if check_images is None:
        check_images = sample_images(imgsz, max(batch, 2) if dynamic else batch)
    sample = check_images[:batch] if not dynamic else check_images[:1]
    if fmt == "onnx":
        to_onnx(module, sample, path, dynamic, output_names(with_o2m))
    elif fmt == "torchscript":
        _torchscript(module, sample, path)
    else:
        _openvino(module, sample, path, dynamic, with_o2m)
    compare(module, path, check_images if dynamic else check_images[:batch])
    return path, imgsz


def sample_images(imgsz: int, n: int) -> torch.Tensor:
    """n embedded validation images (B, 3, imgsz, imgsz) in [0, 1]: what an export is checked on."""
    ds = ShapesDataset("val", n, imgsz)
    return stack_images([ds[i][0] for i in range(n)])


def compare(module: EndToEnd, path: Path, images: torch.Tensor) -> None:
    """The exported model against the PyTorch one on images: the same classes in the same order,
    boxes within BOX_TOL_PX and scores within SCORE_TOL (ValueError saying where otherwise)."""
    with torch.no_grad():
        want = module(images)
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    got = run_exported(path, images.numpy())
    d_want, d_got = want[0], got[0]
    if d_got.shape != d_want.shape:
        raise ValueError(f"{path}: detections of shape {d_got.shape}, the model gives {d_want.shape}")
    for b in range(len(d_want)):
        problem = differences(d_want[b], d_got[b])
        if problem:
            raise ValueError(f"{path}: image {b}: {problem}")


def differences(want: np.ndarray, got: np.ndarray, min_score: float = 1e-3) -> str | None:
    """Where two (K, 6) detection lists of one image differ beyond another runtime's rounding,
    over the rows scoring above min_score: the same class at every rank, boxes within BOX_TOL_PX,
    scores within SCORE_TOL. Rows whose scores tie within SCORE_TOL may come in either order, and
    rows tied with the list's last one are not compared: which of them made the cut is arbitrary."""
    keep = (want[:, 4] > min_score) & (want[:, 4] > want[-1, 4] + SCORE_TOL)
    for i in np.flatnonzero(keep):
        tied = np.flatnonzero(np.abs(want[:, 4] - want[i, 4]) <= SCORE_TOL)
        ok = [
            j
            for j in tied
            if want[j, 5] == got[i, 5]
            and np.abs(want[j, :4] - got[i, :4]).max() <= BOX_TOL_PX
            and abs(want[j, 4] - got[i, 4]) <= SCORE_TOL
        ]
        if not ok:
            return (
                f"row {i}: class {got[i, 5]:.0f} score {got[i, 4]:.6f} box {np.round(got[i, :4], 4).tolist()} against "
                f"class {want[i, 5]:.0f} score {want[i, 4]:.6f} box {np.round(want[i, :4], 4).tolist()}"
            )
    return None
