"""What was built, as `dualhead info` prints it: versions, the extension and its linkage, CPU and
CUDA kernels, the CUDA architectures and kernels embedded in the binary, the ops, a visible GPU."""

from __future__ import annotations

import platform

import torch

import dualhead
from dualhead import _ext
from dualhead._fatbin import cubins


def report() -> str:
    lines = [
        f"dualhead {dualhead.__version__}  python {platform.python_version()}  torch {torch.__version__}"
        f" (cuda {torch.version.cuda})"
    ]
    if not _ext.available():
        lines.append(f"extension: NOT built ({_ext.load_error()!r}); using the pure-torch reference")
        return "\n".join(lines)
    from dualhead import _C  # the built extension: only once _ext has loaded it

    lines += [
        f"extension: {_C.__file__}",
        f"  libstdc++   : {_ext.libstdcxx()}",
        f"  CPU kernels : {'yes' if _ext.has_kernel('box_iou', 'CPU') else 'no'}",
        f"  CUDA kernels: {'yes' if _ext.cuda_built() else 'no'}",
    ]
    if _ext.cuda_built():
        lines.append(f"  CUDA archs  : {';'.join(_ext.cuda_archs())} (TORCH_CUDA_ARCH_LIST at build)")
        by_arch = {}
        for arch, names in cubins(_C.__file__):  # one cubin per arch and .cu file
            by_arch.setdefault(arch, set()).update(names)
        lines += [f"    sm_{arch}: {len(by_arch[arch])} kernels" for arch in sorted(by_arch)]
    schemas = torch._C._jit_get_all_schemas()
    ops = sorted({str(s.name).split("::", 1)[1] for s in schemas if str(s.name).startswith("dualhead::")})
    lines.append(f"  ops         : {', '.join(op for op in ops if op != 'build_info')}")
    if _ext.reference_forced():
        lines.append("  DUALHEAD_REFERENCE=1: every op runs the pure-torch reference (debugging)")
    gpu = torch.cuda.is_available()
    lines.append(f"GPU visible: {'yes, ' + torch.cuda.get_device_name(0) if gpu else 'no'}")
    return "\n".join(lines)
