"""The `dualhead` command: train, predict, export (the NMS-free model as one graph), ablate, export-data,
bench (assignment benchmarks), info (what was built)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

import torch

from dualhead import __version__, bench
from dualhead.detector.data import EMBEDDED, build_dataset
from dualhead.detector.data.check import DatasetError
from dualhead.detector.data.export import export as export_data
from dualhead.detector.experiments import bench_infer, bench_train, bench_train_step
from dualhead.detector.experiments.ablate import ANCHORS, CONFIGS, ablate, parse_list
from dualhead.detector.export import FORMATS, OPSET
from dualhead.detector.export import export as export_model
from dualhead.detector.predict import predict
from dualhead.detector.train import TrainConfig, train
from dualhead.info import report


def cmd_info(args) -> int:
    print(report())
    return 0


def _add_train_options(p):
    """One --option per TrainConfig field: type, default, allowed values and help from the dataclass."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        t = hints[f.name]
        base = next((a for a in typing.get_args(t) if a is not type(None)), t)
        opt = "--" + f.name.replace("_", "-")
        choices = f.metadata.get("choices")
        help_ = f"{f.metadata.get('help', '')} (default: %(default)s)"
        if base is bool:
            p.add_argument(opt, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
        else:
            p.add_argument(
                opt,
                type=base,
                default=f.default,
                choices=choices,
                help=help_,
                metavar="{" + ",".join(choices) + "}" if choices else base.__name__.upper(),
            )


def _config(args):
    return TrainConfig(**{k: getattr(args, k) for k in TrainConfig.field_names()})


def cmd_train(args) -> int:
    m = train(_config(args))  # checked there, before any work
    if "map" in m:  # rank 0 (the one that evaluates)
        print(f"final: mAP@.5:.95 {m['map']:.4f}  mAP@.5 {m['map50']:.4f}  (run folder {args.out})")
    return 0


def cmd_ablate(args) -> int:
    configs = parse_list(args.configs, CONFIGS, "--configs")
    anchors = parse_list(args.anchors, ANCHORS, "--anchors")
    if not configs and not anchors:
        raise ValueError("--configs and --anchors are both empty: nothing to run")

    if anchors and args.data not in EMBEDDED:
        raise ValueError(f"--anchors trains ultralytics on the embedded data only, not --data {args.data!r}")
    ablate(_config(args).validate(), args.ablate_out, configs, args.seeds, args.jobs, anchors, not args.report)
    return 0


def cmd_export_data(args) -> int:
    out = export_data(args.data, args.out, args.imgsz, args.train_len, args.val_len, args.overwrite, args.format)
    what = "images/, labels/, classes.txt" if args.format == "yolo" else "train/, val/, annotations/*.json"
    print(f"wrote {out} ({what}, data.yaml): train on it with --data {out / 'data.yaml'}")
    return 0


def cmd_export(args) -> int:
    path, imgsz = export_model(
        args.weights, args.format, args.out, args.max_det, args.batch, not args.fixed_batch, args.with_o2m
    )
    batch = args.batch if args.fixed_batch else "batch"
    what = {"onnx": f"ONNX opset {OPSET}", "torchscript": "TorchScript", "openvino": "OpenVINO IR (model.xml + .bin)"}
    outs = "detections (batch, max_det, 6): x1 y1 x2 y2 score class, input pixels, best first, no threshold"
    if args.with_o2m:
        outs += "; o2m_boxes (batch, N, 4), o2m_scores (batch, N, C)"
    print(
        f"wrote {path} ({what[args.format]}; no NMS): input images ({batch}, 3, {imgsz}, {imgsz}) float in [0, 1], "
        f"letterboxed; output {outs.replace('batch', str(batch)).replace('max_det', str(args.max_det))}; "
        "checked against the PyTorch model on the embedded validation images"
    )
    return 0


def cmd_predict(args) -> int:
    source = args.source
    if args.data is not None:
        if args.source is not None:
            raise ValueError("give --source or --data, not both")
        source = build_dataset(args.data, args.split, 32, images=args.images)
    elif args.images is not None:
        raise ValueError("--images goes with a COCO JSON --data")
    paths = predict(
        args.weights,
        source or "shapes",
        args.out,
        args.conf,
        args.max_det,
        args.limit,
        args.device,
        save_json=args.save_json,
    )
    videos = [p for p in paths if p.suffix == ".mp4"]
    if videos:
        frames = sum(1 for p in paths if p.suffix == ".jsonl" for _ in open(p))
        print(f"wrote {', '.join(str(p) for p in paths)} ({frames} frames)")
    else:
        n = sum(1 for p in paths if p.suffix == ".png" and not p.name.startswith("contact_sheet"))
        extra = " and predictions.json (COCO results)" if args.save_json else ""
        print(f"wrote {n} images{extra} to {args.out}")
    return 0


def cmd_bench(args) -> int:
    """The assignment benchmarks (dualhead.bench), or the training ones of this detector."""
    if args.train_step or args.train_loop or args.infer:
        torch.set_num_threads(args.threads)
    if args.train_step:
        return bench_train_step.run(args)
    if args.train_loop:
        return bench_train.run(args)
    if args.infer:
        return bench_infer.run(args)
    return bench.run(args)


def _one_line(e: BaseException) -> str:
    """The user-facing line of an error: a DataLoader worker's wrapper ("Caught ValueError in
    DataLoader worker process 0. Original Traceback ...") reduced to the original message."""
    msg = str(e)
    if isinstance(e, DatasetError):  # the dataset check's report: every problem, one per line
        return msg
    if "Original Traceback" in msg:
        last = [ln for ln in msg.splitlines() if ln.strip()][-1]
        msg = last.split(": ", 1)[1] if ": " in last else last
    return msg.splitlines()[0] if msg else type(e).__name__


def _interrupted(args) -> str:
    if args.cmd == "train":
        last = Path(args.out) / "last.pt"
        if last.is_file():
            return (
                f"interrupted; {last} holds the last finished epoch. Continue with: dualhead train --resume "
                f"--out {args.out} (and the same options)"
            )
        return "interrupted before the first epoch finished: nothing was saved"
    return "interrupted"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dualhead", description=__doc__)
    p.add_argument("--version", action="version", version=f"dualhead {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{train,predict,export,ablate,export-data,bench,info}")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    t = sub.add_parser("train", help="train the dual-head detector (default: the embedded data)")
    _add_train_options(t)
    a = sub.add_parser("ablate", help="o2m-only / o2o-only / dual / dual-inconsistent on the same schedule")
    _add_train_options(a)
    a.add_argument(
        "--ablate-out", default="runs/ablate", help="folder of the runs and ablation.md/json (default: %(default)s)"
    )
    a.add_argument(
        "--configs",
        default="o2m,o2o,dual,inconsistent",
        help="comma-separated: o2m, o2o, dual, inconsistent (default: %(default)s)",
    )
    a.add_argument(
        "--anchors",
        default="",
        help="comma-separated ultralytics models trained on the same data with "
        "their own recipe: yolov10n, yolov8n (default: none)",
    )
    a.add_argument(
        "--seeds", type=int, default=1, help="seeds per configuration: --seed, --seed + 1, ... (default: %(default)s)"
    )
    a.add_argument("--jobs", type=int, default=0, help="runs at a time (0: 4 on a GPU, cores / 2 on CPU)")
    a.add_argument("--report", action="store_true", help="train nothing: the table of the runs finished so far")
    e = sub.add_parser(
        "export-data", help="the embedded data as a YOLO-format folder (for other detectors)", formatter_class=fmt
    )
    e.add_argument("--data", default="shapes", choices=("shapes", "shapes-easy"))
    e.add_argument("--format", default="yolo", choices=("yolo", "coco"), help="labels as YOLO text files or COCO JSON")
    e.add_argument("--out", default="data/shapes_yolo", help="folder to write")
    e.add_argument("--imgsz", type=int, default=256)
    e.add_argument("--train-len", type=int, default=None, help="training images (unset: 2000)")
    e.add_argument("--val-len", type=int, default=None, help="validation images (unset: 200)")
    e.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    pr = sub.add_parser(
        "predict",
        help="NMS-free inference (o2o head) on images, videos or a webcam; draws the boxes",
        formatter_class=fmt,
    )
    pr.add_argument("--weights", default="runs/train/best.pt", help="a dualhead checkpoint (best.pt / last.pt)")
    pr.add_argument(
        "--source",
        default=None,
        help="an image, a folder of images, a video (.mp4, .avi, .mov, .mkv, ...), a webcam number (0: "
        "/dev/video0), or 'shapes' (embedded validation images) (default: shapes)",
    )
    pr.add_argument(
        "--data", default=None, help="instead of --source: the images of a dataset, any form train's --data takes"
    )
    pr.add_argument("--split", default="val", choices=("train", "val", "test"), help="with --data: which split")
    pr.add_argument("--images", default=None, help="with a COCO JSON --data: its image folder")
    pr.add_argument("--out", default="runs/predict", help="folder for <name>_pred.png and contact_sheet.png")
    pr.add_argument("--conf", type=float, default=0.25, help="score threshold in [0, 1]")
    pr.add_argument("--max-det", type=int, default=100, help="detections per image (>= 1)")
    pr.add_argument(
        "--limit", type=int, default=None, help="images at most (default 16), or frames of a video (default: all)"
    )
    pr.add_argument(
        "--save-json", action="store_true", help="also write predictions.json: every detection as COCO results"
    )
    pr.add_argument("--device", default="cpu", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    x = sub.add_parser(
        "export",
        help="the NMS-free model as one graph (ONNX, TorchScript, OpenVINO): o2o head + top-k decoding",
        formatter_class=fmt,
    )
    x.add_argument("--weights", default="runs/train/best.pt", help="a dualhead checkpoint (best.pt / last.pt)")
    x.add_argument("--format", default="onnx", choices=tuple(FORMATS), help="ultralytics' names for the formats")
    x.add_argument(
        "--out",
        default=None,
        help="file (folder for openvino) to write; None: beside --weights (best.onnx, best.torchscript, best_openvino/)",
    )
    x.add_argument("--max-det", type=int, default=300, help="detections per image in the output")
    x.add_argument(
        "--batch", type=int, default=1, help="batch of the traced sample (the batch itself with --fixed-batch)"
    )
    x.add_argument("--fixed-batch", action="store_true", help="a fixed batch instead of a dynamic one")
    x.add_argument("--with-o2m", action="store_true", help="also output the o2m head's decoded boxes and scores")
    sub.add_parser("info", help="what was built: CPU/CUDA kernels, CUDA archs, torch version, GPU")
    b = sub.add_parser(
        "bench", help="assignment benchmarks (contract §5 workloads) against the baselines", formatter_class=fmt
    )

    bench.add_arguments(b)
    b.add_argument(
        "--train-step",
        action="store_true",
        help="instead: a whole ultralytics YOLOv10n training step with and without dualhead's assigner",
    )
    b.add_argument(
        "--train-loop",
        action="store_true",
        help="instead: images/s of `dualhead train`'s data pipeline alone, its step alone and the whole loop",
    )
    b.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data workers for --train-loop (default: dualhead train's for the embedded data: 0 on CPU, "
        "up to 8 on a GPU)",
    )
    b.add_argument(
        "--infer",
        action="store_true",
        help="instead: inference latency per image, o2o end to end against o2m + NMS, PyTorch and onnxruntime",
    )
    b.add_argument("--weights", default="runs/train/best.pt", help="the checkpoint --infer times")
    b.add_argument("--loop-images", type=int, default=512, help="training images --train-loop renders and loads")
    args = p.parse_args(argv)
    try:
        return {
            "info": cmd_info,
            "train": cmd_train,
            "ablate": cmd_ablate,
            "predict": cmd_predict,
            "export-data": cmd_export_data,
            "export": cmd_export,
            "bench": cmd_bench,
        }[args.cmd](args)
    except KeyboardInterrupt:  # Ctrl-C: a clean stop, and how to go on
        print(f"\ndualhead {args.cmd}: {_interrupted(args)}", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # bad input or an unusable file/folder: a clear message, not a traceback
        print(f"dualhead {args.cmd}: error: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
