"""The CUDA kernels on CPU: builds and loads the emulation library (csrc/cuda/emu), and routes
dualhead.ops to it.

The library is the CUDA backend compiled a second time by the host compiler: the kernels and
shared stages of csrc/cuda/*.cu and csrc/assign_core.h, their launchers and the CUDA host code,
against csrc/cuda/emu/cuda_emu.h, as the op library `dualhead_emu` registered for CPU tensors.
Variants (DUALHEAD_CUDA_EMU): plain (what `make test` runs), asan (AddressSanitizer +
UndefinedBehaviorSanitizer) and tsan (ThreadSanitizer); the sanitizer variants need their
runtime preloaded into Python (`make cuda-emu` does that).

    python tests/cuda_emu.py build [variant]     # build (no sanitizer runtime needed) + register table
    python tests/cuda_emu.py resources           # the register table, printed
    python tests/cuda_emu.py report FILE...      # every __global__ of csrc/cuda with its launches

The emulation build copies csrc/ into its build folder (each file starting with a #line that
names the original, so every report points at the real source) and makes two changes there, each
on the same line: each `__launch_bounds__(n) kernel(...) {` gets `DH_EMU_LAUNCH_BOUNDS(n);` as its
first statement, so a launch above the bound fails as it does on a GPU; each `__shared__ T
name[dims];` becomes `DH_EMU_SHARED(name, T[dims]);`, the block's own copy in its shared-memory
arena. A mutant build applies text substitutions to that copy (tests/cuda_emu_mutants.py).

The register table (`resources`): ptxas' registers and static shared memory of every kernel
instantiation, for each arch the wheel is built for (nvcc --resource-usage), which the runtime
checks each launch against (DH_EMU_RESOURCES). Built when nvcc is found; cached by the sources.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
EMU = os.path.join(CSRC, "cuda", "emu")
BUILD = os.path.join(ROOT, "build", "cuda_emu")

TARGET_VERSION = "0x20a000000000000"  # setup.py: TORCH_TARGET_VERSION (torch 2.10)
COMMON = [
    "-std=c++20",
    "-g",
    "-ffp-contract=off",
    "-fvisibility=hidden",
    "-DDH_LIB=dualhead_emu",
    f"-DTORCH_TARGET_VERSION={TARGET_VERSION}",
    "-Wno-tsan",
]
VARIANTS = {
    "plain": (["-O2"], []),
    "asan": (
        # bounds-strict: UBSan's bounds check on trailing arrays of structs too (plain bounds skips them)
        ["-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined,bounds-strict", "-fno-sanitize-recover=all"],
        ["-fsanitize=address,undefined"],
    ),
    "tsan": (["-O1", "-fsanitize=thread"], ["-fsanitize=thread"]),
    "cov": (["-O0", "--coverage", "-fprofile-update=atomic"], ["--coverage"]),
}
# The runtime's own bookkeeping is not under ThreadSanitizer (runtime.cpp says why).
UNINSTRUMENTED = {"tsan": {os.path.join("cuda", "emu", "runtime.cpp"): "-fsanitize=thread"}}
DEFAULT_ARCHS = "8.0;9.0"  # setup.py's DEFAULT_ARCHS (tests/test_cuda.py checks they agree)
RUNTIMES = {"asan": "libasan.so", "tsan": "libtsan.so"}

_LAUNCH_BOUNDS = re.compile(r"__launch_bounds__\(((?:[^()]|\([^()]*\))*)\)\s*(\w+)\s*\(")
_SHARED = re.compile(r"__shared__\s+([^;{}()=]+?)\s+(\w+)\s*((?:\[[^\]]+\])*)\s*;")


def variant() -> str:
    """The build to load: plain, asan or tsan (a mutant build: <variant>-<mutant>)."""
    v = os.environ.get("DUALHEAD_CUDA_EMU", "plain")
    if v.split("-")[0] not in VARIANTS:
        raise ValueError(f"DUALHEAD_CUDA_EMU must be one of {sorted(VARIANTS)}, got {v!r}")
    return v


def _bound_checks(text: str, path: str) -> str:
    """Inserts DH_EMU_LAUNCH_BOUNDS(n); after the opening brace of each kernel declared with
    __launch_bounds__(n), on the same line (line numbers stay those of the source)."""
    out, pos = [], 0
    for m in _LAUNCH_BOUNDS.finditer(text):
        depth, i = 1, m.end()
        while depth:  # the kernel's parameter list
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        brace = text.index("{", i)
        if text[i:brace].strip():
            raise RuntimeError(f"{path}: unexpected text between {m.group(2)}'s parameters and its body")
        out += [text[pos : brace + 1], f" DH_EMU_LAUNCH_BOUNDS({m.group(1)});"]
        pos = brace + 1
    return "".join(out) + text[pos:]


def _shared_decls(text: str, path: str) -> str:
    """Rewrites each `__shared__ T name[dims];` into `DH_EMU_SHARED(name, T[dims]);` (same line);
    any other use of __shared__ (an initializer, extern) is an error here."""
    text = _SHARED.sub(lambda m: f"DH_EMU_SHARED({m.group(2)}, {m.group(1)}{m.group(3)});", text)
    if "__shared__" in text:
        line = text[: text.index("__shared__")].count("\n") + 1
        raise RuntimeError(f"{path}:{line}: a __shared__ declaration the emulation build cannot rewrite")
    return text


def _write_if_changed(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return  # keep the mtime: ninja rebuilds only what changed
    with open(path, "w") as f:
        f.write(text)


def _copy_tree(dst: str, mutations: dict[str, list[tuple[str, str]]]) -> list[str]:
    """csrc/ into dst (.cu as .cu.cpp with bound checks), mutations applied; returns the sources."""
    sources = []
    for src in sorted(glob.glob(os.path.join(CSRC, "**", "*"), recursive=True)):
        if os.path.isdir(src) or not src.endswith((".h", ".cpp", ".cu", ".cuh")):
            continue
        rel = os.path.relpath(src, CSRC)
        with open(src) as f:
            text = f.read()
        for old, new in mutations.get(rel, []):
            if text.count(old) != 1:
                raise RuntimeError(f"mutation of {rel}: {old!r} occurs {text.count(old)} times, not once")
            text = text.replace(old, new)
        target = os.path.join(dst, rel)
        if rel.endswith(".cu"):
            text, target = _bound_checks(text, rel), target + ".cpp"
        if rel.endswith((".cu", ".h", ".cuh")) and not rel.startswith(os.path.join("cuda", "emu")):
            text = _shared_decls(text, rel)
        _write_if_changed(target, f'#line 1 "{src}"\n{text}')
        top = rel.split(os.sep)[0]
        compiled = (
            rel in ("assign.cpp", "box_iou.cpp", "anchor_grid.cpp", "to_dense.cpp")
            or (top == "cuda" and os.path.dirname(rel) == "cuda")
            or rel in (os.path.join("cuda", "emu", "runtime.cpp"), os.path.join("cuda", "emu", "ops.cpp"))
        )
        if compiled and rel.endswith((".cpp", ".cu")):
            sources.append(target)
    return sources


def build(
    name: str | None = None, mutations: dict[str, list[tuple[str, str]]] | None = None, verbose: bool = False
) -> str:
    """Builds the emulation library of variant name (default: DUALHEAD_CUDA_EMU) with ninja and
    returns its path (built, not loaded: a sanitizer build loads only under its runtime). One
    process at a time per variant (parallel test workers share the build folder)."""
    import fcntl

    name = name or variant()
    os.makedirs(BUILD, exist_ok=True)
    with open(os.path.join(BUILD, f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(name, mutations, verbose)


def _build(name: str, mutations, verbose: bool) -> str:
    import subprocess

    import torch

    kind = name.split("-")[0]  # a mutant build is named <variant>-<mutant>
    cflags, ldflags = VARIANTS[kind]
    tree = os.path.join(BUILD, name, "csrc")
    sources = _copy_tree(tree, mutations or {})
    out = os.path.join(BUILD, name, "obj")
    lib = _lib_path(name)
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    torch_dir = os.path.dirname(torch.__file__)
    incs = [os.path.join(tree, "cuda", "emu", "include"), tree, os.path.join(torch_dir, "include")]
    cxx = os.environ.get("CXX", "c++")
    flags = (
        ["-fPIC", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
        + COMMON
        + cflags
        + ["-include", os.path.join(tree, "cuda", "emu", "cuda_emu.h")]
        + [f"-I{i}" for i in incs]
    )
    torch_lib = os.path.join(torch_dir, "lib")
    lines = [
        f"cxx = {cxx}",
        f"flags = {' '.join(flags)}",
        f"ldflags = -shared {' '.join(ldflags)} -L{torch_lib} -lc10 -ltorch -ltorch_cpu -Wl,-rpath,{torch_lib}",
        "rule cxx",
        "  command = $cxx -MMD -MF $out.d $flags -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "rule link",
        "  command = $cxx $in $ldflags -o $out",
    ]
    objs = []
    plain = UNINSTRUMENTED.get(kind, {})
    for src in sources:
        rel = os.path.relpath(src, tree)
        obj = os.path.join(out, rel.replace(os.sep, "_") + ".o")
        objs.append(obj)
        lines.append(f"build {obj}: cxx {src}")
        if rel in plain:
            lines.append(f"  flags = {' '.join(f for f in flags if f != plain[rel])}")
    lines.append(f"build {lib}: link {' '.join(objs)}")
    _write_if_changed(os.path.join(out, "build.ninja"), "\n".join(lines) + "\n")
    jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 2))
    run = subprocess.run(
        [_ninja(), "-C", out, "-j", jobs] + ([] if verbose else ["--quiet"]),
        stdout=None if verbose else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if run.returncode:
        raise RuntimeError(f"building the CUDA emulation library {name} failed:\n{run.stdout}")
    return lib


def _nvcc() -> str | None:
    """The toolkit's nvcc (CUDA_HOME, /usr/local/cuda, or nvcc on PATH resolved to its toolkit)."""
    import shutil

    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    found = shutil.which("nvcc")
    return os.path.realpath(found) if found else None


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def _signature(demangled: str) -> str:
    """'void ns::(anonymous namespace)::k<float>(float const*, long)' -> 'k(float const*, long)':
    the key a launch looks its kernel up by (cuda_emu.h: the base name and the parameter types)."""
    text = demangled.replace("(anonymous namespace)::", "")
    head, _, params = text.partition("(")
    depth, name = 0, ""
    for ch in head.removeprefix("void "):  # template arguments dropped
        depth += {"<": 1, ">": -1}.get(ch, 0)
        name += ch if depth == 0 and ch != ">" else ""
    return f"{name.split('::')[-1].strip()}({params}"


def resources(verbose: bool = False) -> str | None:
    """The register table of the kernels (see the module's doc), built if needed; None without
    nvcc. One nvcc run per .cu and arch (~5 s each), cached by the sources and the toolkit; one
    process at a time (parallel test workers share it)."""
    import fcntl

    nvcc = _nvcc()
    if nvcc is None:
        return None
    os.makedirs(BUILD, exist_ok=True)
    with open(os.path.join(BUILD, "resources.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _resources(nvcc, verbose)


def _resources(nvcc: str, verbose: bool) -> str:
    import concurrent.futures
    import hashlib
    import subprocess

    archs = [a.strip().replace(".", "") for a in os.environ.get("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS).split(";")]
    archs = [a.split("+")[0] for a in archs if a]
    flags = ["-O3", "--fmad=false", "--expt-relaxed-constexpr", "-std=c++20", f"-I{CSRC}"]
    key = hashlib.sha256()
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    key.update((version + " ".join(flags + archs)).encode())
    with open(__file__, "rb") as f:  # the parsing below
        key.update(f.read())
    for src in sorted(glob.glob(os.path.join(CSRC, "**", "*"), recursive=True)):
        if src.endswith((".cu", ".h", ".cuh")) and os.sep + "emu" + os.sep not in src:
            with open(src, "rb") as f:
                key.update(src.encode() + f.read())
    out = os.path.join(BUILD, "resources.tsv")
    stamp = f"# {key.hexdigest()}\n"
    if os.path.exists(out):
        with open(out) as f:
            if f.readline() == stamp:
                return out
    os.makedirs(os.path.join(BUILD, "ptxas"), exist_ok=True)

    def one(job):
        src, arch = job
        cubin = os.path.join(BUILD, "ptxas", f"{os.path.basename(src)}.sm_{arch}.cubin")
        r = subprocess.run(
            [nvcc, "-cubin", f"-arch=sm_{arch}", "--resource-usage", *flags, "-o", cubin, src],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            raise RuntimeError(f"nvcc --resource-usage {src} sm_{arch} failed:\n{r.stderr[-2000:]}")
        return r.stdout + r.stderr

    jobs = [(src, arch) for src in sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu"))) for arch in archs]
    workers = int(os.environ.get("MAX_JOBS", str(os.cpu_count() or 2)))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        reports = list(pool.map(one, jobs))
    rows, mangled = [], []
    for report in reports:
        entry = None
        for line in report.splitlines():
            m = _ENTRY.search(line)
            if m:
                entry = m.groups()
                continue
            m = _USED.search(line)
            if m and entry:
                rows.append((entry[1], entry[0], int(m.group(1)), int(m.group(2) or 0)))
                mangled.append(entry[0])
                entry = None
    names = subprocess.run(["c++filt"], input="\n".join(mangled), capture_output=True, text=True).stdout.splitlines()
    lines = [f"{arch}\t{_signature(d)}\t{regs}\t{smem}\n" for (arch, _, regs, smem), d in zip(rows, names)]
    if verbose:
        print("".join(lines), end="")
    _write_if_changed(out, stamp + "".join(sorted(set(lines))))
    return out


def _ninja() -> str:
    """ninja beside this Python (the venv's pip package), else on PATH."""
    import shutil

    here = os.path.join(os.path.dirname(sys.executable), "ninja")
    found = here if os.path.exists(here) else shutil.which("ninja")
    if found is None:
        raise RuntimeError("the CUDA emulation build needs ninja: pip install ninja")
    return found


def _lib_path(name: str) -> str:
    return os.path.join(BUILD, name, "obj", f"dualhead_emu_{name.replace('-', '_')}.so")


def _built(name: str) -> str:
    lib = _lib_path(name)
    if not os.path.exists(lib):
        raise RuntimeError(f"{lib} is not built: python tests/cuda_emu.py build {name}")
    return lib


def runtime_missing(kind: str) -> str | None:
    """Why a sanitizer variant cannot load in this process (its runtime must come first), or None."""
    lib = RUNTIMES.get(kind)
    if lib is None:
        return None
    with open("/proc/self/maps") as f:
        if lib.split(".")[0] in f.read():
            return None
    return (
        f"the {kind} emulation library needs its sanitizer runtime preloaded (LD_PRELOAD={lib}): "
        "run it through `make cuda-emu`"
    )


_loaded: str | None = None


def load() -> str:
    """Builds (if needed) and loads the library of DUALHEAD_CUDA_EMU into this process, once."""
    global _loaded
    if _loaded is None:
        name = variant()
        why = runtime_missing(name.split("-")[0])
        if why:
            raise RuntimeError(why)
        # A sanitizer build is made beforehand (make cuda-emu), and so is a mutant build of any
        # variant (cuda_emu_mutants.py, DUALHEAD_CUDA_EMU_PREBUILT=1): compiling from inside an
        # instrumented process is slow, and a rebuild here would undo the mutation.
        prebuilt = name != "plain" or os.environ.get("DUALHEAD_CUDA_EMU_PREBUILT") == "1"
        path = _built(name) if prebuilt else build(name)
        table = resources()
        if table and not os.environ.get("DH_EMU_RESOURCES"):
            os.environ["DH_EMU_RESOURCES"] = table  # read by the runtime at its first launch
        import torch

        if not torch._C._dispatch_has_kernel("dualhead_emu::assign"):
            torch.ops.load_library(path)
        _loaded = path
    return _loaded


@contextlib.contextmanager
def routed():
    """dualhead.ops on the emulated CUDA backend: CPU tensors, torch.ops.dualhead_emu.*."""
    import torch

    import dualhead.ops as ops

    load()
    saved = ops._lib, ops._use_kernel, ops._error_devices
    ops._lib = torch.ops.dualhead_emu
    ops._use_kernel = lambda op, t: isinstance(t, torch.Tensor)
    ops._error_devices = lambda device: [-1]  # CPU tensors: the device-check record of device -1
    try:
        yield
    finally:
        ops._lib, ops._use_kernel, ops._error_devices = saved


def launch_counts() -> dict[str, int]:
    import torch

    load()
    pairs = [kv.split("=") for kv in torch.ops.dualhead_emu.launch_counts().split(";") if kv]
    return {k: int(v) for k, v in pairs}


def host_syncs() -> int:
    import torch

    load()
    return int(torch.ops.dualhead_emu.host_syncs())


def kernels() -> list[str]:
    """Every __global__ kernel defined in csrc/cuda/*.cu."""
    names = []
    for path in sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu"))):
        with open(path) as f:
            text = f.read()
        for m in re.finditer(r"__global__\s+void\s+(?:__launch_bounds__\((?:[^()]|\([^()]*\))*\)\s*)?(\w+)\s*\(", text):
            names.append(m.group(1))
    return names


def report(paths: list[str]) -> int:
    """Prints every kernel with its launches in each count file; 1 if one never ran in some run."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    names = [os.path.basename(p).replace(".counts.json", "") for p in paths]
    print(f"{'kernel (csrc/cuda/*.cu)':<26}" + "".join(f"{n:>10}" for n in names))
    missing = []
    for k in kernels():
        print(f"{k:<26}" + "".join(f"{r.get(k, 0):>10}" for r in runs))
        missing += [k] if not all(r.get(k) for r in runs) else []
    if missing:
        print(f"never launched in some run: {', '.join(missing)}")
    return 1 if missing else 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "build"
    if cmd == "build":
        print(build(sys.argv[2] if len(sys.argv) > 2 else None, verbose="-v" in sys.argv))
        print(resources() or "no nvcc: no register table, the register check is off")
    elif cmd == "resources":
        print(resources(verbose=True))
    elif cmd == "report":
        sys.exit(report(sys.argv[2:]))
    else:
        sys.exit(f"usage: {sys.argv[0]} build [variant] | report COUNTS.json...")
