"""The `dualhead` command: train, predict, ablate, bench (assignment benchmarks), info (what was built)."""

from __future__ import annotations

import argparse
import sys


def cmd_info(args) -> int:
    import platform

    import torch

    import dualhead
    from dualhead import _ext

    print(f"dualhead {dualhead.__version__}  python {platform.python_version()}  torch {torch.__version__}"
          f" (cuda {torch.version.cuda})")
    if not _ext.available():
        print(f"extension: NOT built ({_ext.load_error()!r}); using the pure-torch reference")
        return 0
    from dualhead import _C
    from dualhead._fatbin import cubins

    print(f"extension: {_C.__file__}")
    print(f"  libstdc++   : {_ext.libstdcxx()}")
    print(f"  CPU kernels : {'yes' if _ext.has_kernel('box_iou', 'CPU') else 'no'}")
    print(f"  CUDA kernels: {'yes' if _ext.cuda_built() else 'no'}")
    if _ext.cuda_built():
        print(f"  CUDA archs  : {';'.join(_ext.cuda_archs())} (TORCH_CUDA_ARCH_LIST at build)")
        by_arch = {}
        for arch, names in cubins(_C.__file__):  # one cubin per arch and .cu file
            by_arch.setdefault(arch, set()).update(names)
        for arch in sorted(by_arch):
            print(f"    sm_{arch}: {len(by_arch[arch])} kernels")
    ops = sorted({str(s.name).split("::", 1)[1] for s in torch._C._jit_get_all_schemas()
                  if str(s.name).startswith("dualhead::")} - {"build_info"})
    print(f"  ops         : {', '.join(ops)}")
    if _ext.reference_forced():
        print("  DUALHEAD_REFERENCE=1: every op runs the pure-torch reference (debugging)")
    gpu = torch.cuda.is_available()
    print(f"GPU visible: {'yes, ' + torch.cuda.get_device_name(0) if gpu else 'no'}")
    return 0


def _add_train_options(p):
    """One --option per TrainConfig field (defaults and types from the dataclass)."""
    import dataclasses
    import typing

    from dualhead.train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        t = hints[f.name]
        base = next((a for a in typing.get_args(t) if a is not type(None)), t)
        opt = "--" + f.name.replace("_", "-")
        if base is bool:
            p.add_argument(opt, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            p.add_argument(opt, type=base, default=f.default, metavar=base.__name__.upper())


def _config(args):
    from dualhead.train import TrainConfig

    return TrainConfig(**{k: getattr(args, k) for k in TrainConfig.field_names()})


def cmd_train(args) -> int:
    from dualhead.train import train

    m = train(_config(args))
    if "map" in m:  # rank 0 (the one that evaluates)
        print(f"final: mAP@.5:.95 {m['map']:.4f}  mAP@.5 {m['map50']:.4f}  (run folder {args.out})")
    return 0


def cmd_ablate(args) -> int:
    from dualhead.ablate import ablate

    ablate(_config(args), args.ablate_out)
    return 0


def cmd_predict(args) -> int:
    from dualhead.predict import predict

    paths = predict(args.weights, args.source, args.out, args.conf, args.max_det, args.limit, args.device)
    print(f"wrote {len(paths)} images to {args.out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dualhead", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the dual-head detector (default: embedded data, ~12 min on 2 CPU cores)")
    _add_train_options(t)
    a = sub.add_parser("ablate", help="o2m-only / o2o-only / dual / dual-inconsistent on the same schedule")
    _add_train_options(a)
    a.add_argument("--ablate-out", default="runs/ablate")
    pr = sub.add_parser("predict", help="NMS-free inference (o2o head); draws boxes onto PNGs")
    pr.add_argument("--weights", default="runs/train/best.pt")
    pr.add_argument("--source", default="shapes", help="image, folder, or 'shapes' (embedded validation images)")
    pr.add_argument("--out", default="runs/predict")
    pr.add_argument("--conf", type=float, default=0.25)
    pr.add_argument("--max-det", type=int, default=100)
    pr.add_argument("--limit", type=int, default=16)
    pr.add_argument("--device", default="cpu")
    sub.add_parser("info", help="what was built: CPU/CUDA kernels, CUDA archs, torch version, GPU")
    b = sub.add_parser("bench", help="assignment benchmarks (SPEC §5 workloads) against the baselines")
    from dualhead import bench

    bench.add_arguments(b)
    args = p.parse_args(argv)
    try:
        return {"info": cmd_info, "train": cmd_train, "ablate": cmd_ablate, "predict": cmd_predict,
                "bench": bench.run}[args.cmd](args)
    except ValueError as e:  # bad input: a clear message, not a traceback
        print(f"dualhead {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
