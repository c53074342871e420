"""The `dualhead` command: info (what was built) and bench (assignment benchmarks)."""

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
    gpu = torch.cuda.is_available()
    print(f"GPU visible: {'yes, ' + torch.cuda.get_device_name(0) if gpu else 'no'}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dualhead", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="what was built: CPU/CUDA kernels, CUDA archs, torch version, GPU")
    b = sub.add_parser("bench", help="assignment benchmarks (SPEC §5 workloads) against the baselines")
    from dualhead import bench

    bench.add_arguments(b)
    args = p.parse_args(argv)
    if args.cmd == "info":
        return cmd_info(args)
    return bench.run(args)


if __name__ == "__main__":
    sys.exit(main())
