"""Build of dualhead's C++/CUDA extension (dualhead._C).

C++ sources (csrc/*.cpp, csrc/cpu/*.cpp) are always built; CUDA sources (csrc/cuda/*) whenever a
CUDA toolkit is found and torch is a CUDA build -- a GPU need not be present. Knobs (printed at
build time):

  DUALHEAD_FORCE_CUDA=1   build CUDA or fail (no silent CPU-only build)
  DUALHEAD_NO_CUDA=1      skip CUDA even when a toolkit is there
  TORCH_CUDA_ARCH_LIST    archs to compile for; default "8.0;9.0" (sm_80, sm_90)
  CUDA_HOME / CUDA_PATH   toolkit root; otherwise found from /usr/local/cuda or nvcc on PATH
  MAX_JOBS                parallel compile jobs (ninja)
  CC / CXX                the compilers; the build fails if they link libstdc++ statically

The linked extension must load libstdc++ dynamically (the one torch uses): a compiler that adds
-static-libstdc++ makes every formatted error message lose its numbers or segfault, so the
build checks the NEEDED entries of what it linked and stops with an explanation instead.

The extension uses only the LibTorch stable ABI (TORCH_TARGET_VERSION = 2.10) and Python's
limited API (abi3, CPython >= 3.10): one binary runs under every torch >= 2.10 and every
CPython >= 3.10, whatever torch it was compiled against. So a plain `pip install .` (pip builds
in an isolated environment with its own torch, from pyproject.toml) and `pip install
--no-build-isolation .` (the torch already installed) give binaries that load alike.
"""

import glob
import importlib.util
import os
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0"
# The oldest torch the binary supports: the stable ABI's version encoding (major << 56 | minor << 48).
TARGET_TORCH = (2, 10)
TORCH_TARGET_VERSION = hex((TARGET_TORCH[0] << 56) | (TARGET_TORCH[1] << 48))


def _is_toolkit(root):
    return (
        bool(root)
        and os.path.isfile(os.path.join(root, "bin", "nvcc"))
        and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h"))
    )


def find_cuda_home():
    """The CUDA toolkit root, or None.

    torch guesses CUDA_HOME from `which nvcc`, which is wrong when nvcc on PATH is a wrapper
    script (e.g. /usr/local/bin/nvcc -> CUDA_HOME=/usr/local, which has no CUDA headers or libs).
    Accept only a directory that really holds bin/nvcc and include/cuda_runtime.h.
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if _is_toolkit(os.environ.get(var)):
            return os.environ[var]
    candidates = ["/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        # A wrapper script: look for the toolkit path it execs.
        try:
            with open(nvcc, errors="ignore") as f:
                for word in f.read(4096).split():
                    if word.endswith("/bin/nvcc"):
                        candidates.append(os.path.dirname(os.path.dirname(word)))
        except OSError:
            pass
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for c in candidates:
        if _is_toolkit(c):
            return c
    return None


cuda_home = find_cuda_home()
if cuda_home:
    # Must be set before torch.utils.cpp_extension is imported: it reads CUDA_HOME at import.
    os.environ["CUDA_HOME"] = cuda_home

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
except ImportError:  # pragma: no cover - message for users building in an isolated env
    sys.exit(
        "dualhead: the build needs torch >= 2.10 (for its headers): `pip install .` installs it in the\n"
        "isolated build environment; with --no-build-isolation, install torch first"
    )


def _load_elf():
    """dualhead/_elf.py by path (the package itself imports torch and the extension)."""
    spec = importlib.util.spec_from_file_location("_dualhead_elf", os.path.join(ROOT, "dualhead", "_elf.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BuildExt(BuildExtension.with_options(use_ninja=True)):
    """torch's BuildExtension plus a check of what was linked (see the module docstring)."""

    def build_extension(self, ext):
        super().build_extension(ext)
        path = self.get_ext_fullpath(ext.name)
        elf = _load_elf()
        print(f"dualhead build: {os.path.basename(path)} links libstdc++ {elf.libstdcxx(path)}", flush=True)
        msg = elf.check_linkage(path, os.environ.get("CXX", "unset"))
        if msg:
            os.remove(path)  # never leave a crashing binary where Python would import it
            sys.exit("dualhead: " + msg)


def want_cuda():
    if os.environ.get("DUALHEAD_NO_CUDA") == "1":
        return False, "DUALHEAD_NO_CUDA=1"
    force = os.environ.get("DUALHEAD_FORCE_CUDA") == "1"
    if torch.version.cuda is None:
        if force:
            sys.exit("dualhead: DUALHEAD_FORCE_CUDA=1 but torch is a CPU-only build")
        return False, "torch is a CPU-only build"
    if not cuda_home:
        if force:
            sys.exit("dualhead: DUALHEAD_FORCE_CUDA=1 but no CUDA toolkit was found (set CUDA_HOME)")
        return False, "no CUDA toolkit found"
    return True, f"toolkit at {cuda_home}"


def extensions():
    with_cuda, why = want_cuda()
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # -ffp-contract=off: no fused multiply-adds, so the C++ float math rounds exactly like
    # torch's separate tensor ops (the parity tests compare with ultralytics to 1e-5).
    # Threads come from torch::stable::parallel_for (libtorch's pool): no OpenMP here.
    cxx = ["-O3", "-ffp-contract=off"]  # the C++ standard is torch's choice (C++20 for 2.14)
    define_macros = [("TORCH_TARGET_VERSION", TORCH_TARGET_VERSION)]
    archs = ""
    if with_cuda:
        archs = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
        sources += sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu"))
        define_macros.append(("DUALHEAD_CUDA_ARCHS", f'"{archs}"'))
        define_macros.append(("USE_CUDA", None))  # the CUDA part of the AOTI C shim (current stream)
    print(
        f"dualhead build: torch {torch.__version__} (cuda {torch.version.cuda}), CUDA "
        f"{'on' if with_cuda else 'off'} ({why}), CUDA_HOME={cuda_home}, "
        f"TORCH_CUDA_ARCH_LIST={archs or '-'}, MAX_JOBS={os.environ.get('MAX_JOBS', '-')}, stable ABI target torch "
        f"{TARGET_TORCH[0]}.{TARGET_TORCH[1]}, abi3",
        flush=True,
    )
    kwargs = dict(
        name="dualhead._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros,
        py_limited_api=True,  # no libtorch_python, Python's limited API: an abi3 binary
    )
    if with_cuda:
        # --fmad=false: same no-FMA rounding as the CPU build, so CPU and GPU agree closely.
        nvcc = ["-O3", "--fmad=false", "--expt-relaxed-constexpr", f"-DTORCH_TARGET_VERSION={TORCH_TARGET_VERSION}"]
        return [CUDAExtension(extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs)]
    return [CppExtension(extra_compile_args={"cxx": cxx}, **kwargs)]


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
