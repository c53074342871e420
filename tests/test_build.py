"""What was built: CPU kernels always; CUDA kernels (with sm_90 code) when CI expects them."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from dualhead import _elf, _ext

expect_cuda = os.environ.get("DUALHEAD_EXPECT_CUDA") == "1"


def test_extension_loaded():
    if not _ext.available() and not expect_cuda:
        pytest.skip(f"extension not built: {_ext.load_error()!r}")
    assert _ext.available(), f"extension failed to load: {_ext.load_error()!r}"
    assert _ext.has_kernel("box_iou", "CPU")


def test_unloaded_build_fails_the_test_run(tmp_path):
    """The kernel test modules skip themselves without the extension; the test command itself
    must then fail (a green run of skips is no test), unless the run asks for that on purpose."""
    here = os.path.dirname(os.path.abspath(__file__))
    pkg = tmp_path / "pkg" / "dualhead"
    source = os.path.dirname(os.path.abspath(_ext.__file__))  # the checkout's or the installed wheel's
    shutil.copytree(source, pkg, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    suite = tmp_path / "tests"
    suite.mkdir()
    shutil.copy(os.path.join(here, "conftest.py"), suite)
    (suite / "test_nothing.py").write_text("def test_python_only():\n    pass\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "pkg")}
    env.pop("DUALHEAD_ALLOW_NO_EXTENSION", None)
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)]
    r = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "compiled extension did not load" in r.stdout + r.stderr and "not built" in r.stdout + r.stderr
    r = subprocess.run(
        run, capture_output=True, text=True, env={**env, "DUALHEAD_ALLOW_NO_EXTENSION": "1"}, cwd=tmp_path
    )
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr


@pytest.mark.skipif(not expect_cuda, reason="set DUALHEAD_EXPECT_CUDA=1 where a CUDA build is expected")
def test_cuda_built_with_sm90_kernels():
    from dualhead import _C
    from dualhead._fatbin import cubins

    assert _ext.cuda_built()
    assert "9.0" in _ext.cuda_archs()
    by_arch = {}
    for arch, names in cubins(_C.__file__):  # one cubin per arch and .cu file
        by_arch.setdefault(arch, set()).update(names)
    assert 90 in by_arch and 80 in by_arch, f"embedded cubins: {sorted(by_arch)}"
    kernels = by_arch[90]
    assert len(kernels) >= 3, sorted(kernels)
    for name in (
        "box_iou_kernel",
        "gt_tiles_kernel",
        "gt_rows_kernel",
        "anchors_kernel",
        "image_kernel",
        "stats_kernel",
    ):
        assert any(name in k for k in kernels), f"{name} missing from sm_90 code"


def test_info_command():
    """python -m dualhead info: the library's own tool, which needs nothing of the detector
    application (`make compat` runs it where only torch is installed beside the wheel)."""
    out = subprocess.run([sys.executable, "-m", "dualhead", "info"], capture_output=True, text=True, check=True).stdout
    assert "torch" in out
    if _ext.available():
        assert "CPU kernels : yes" in out
        assert "libstdc++   : dynamic (libstdc++.so.6)" in out
    if expect_cuda:
        assert "CUDA kernels: yes" in out and "sm_90" in out


def test_extension_links_libstdcxx_dynamically():
    """contract §4 (nothing segfaults, however the extension was built): the built _C must use the
    libstdc++.so that torch loaded, not a copy of its own (see dualhead._elf.libstdcxx)."""
    if not _ext.available():
        pytest.skip(f"extension not built: {_ext.load_error()!r}")
    assert _ext.libstdcxx().startswith("dynamic (libstdc++"), _ext.libstdcxx()


BOOM = r"""
#include <torch/library.h>
#include <c10/util/Exception.h>
void boom(int64_t n) { TORCH_CHECK(n < 0, "n must be negative, got ", n); }
TORCH_LIBRARY(dualhead_linktest, m) { m.def("boom(int n) -> ()", &boom); }
"""

CALL_BOOM = r"""
import sys, torch
torch.ops.load_library(sys.argv[1])
try:
    torch.ops.dualhead_linktest.boom(5)
except RuntimeError as e:
    print("message:", str(e).splitlines()[0])
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_static_libstdcxx_build_is_refused(tmp_path):
    """The broken configuration of the first GPU run, reproduced with a 4-line extension built
    both ways: with -static-libstdc++ a formatted TORCH_CHECK loses its number (here) or
    segfaults (there). The linkage check tells the two builds apart, setup.py's check refuses the
    static one, and dualhead._ext would not load it."""
    import torch.utils.cpp_extension as ce

    src = tmp_path / "boom.cpp"
    src.write_text(BOOM)
    inc = [f"-I{p}" for p in ce.include_paths()]
    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    results = {}
    for name, extra in (("dynamic", []), ("static", ["-static-libstdc++"])):
        so = str(tmp_path / f"boom_{name}.so")
        subprocess.run(
            [
                "g++",
                "-O1",
                "-shared",
                "-fPIC",
                "-std=c++20",
                *inc,
                str(src),
                "-o",
                so,
                f"-L{lib}",
                "-lc10",
                "-ltorch_cpu",
                *extra,
            ],
            check=True,
            capture_output=True,
        )
        r = subprocess.run([sys.executable, "-c", CALL_BOOM, so], capture_output=True, text=True, timeout=120)
        results[name] = (so, r.returncode, r.stdout.strip())
    so, rc, out = results["dynamic"]
    assert rc == 0 and out == "message: n must be negative, got 5", out
    assert _elf.libstdcxx(so).startswith("dynamic")
    assert _elf.check_linkage(so, "g++") is None
    _ext._check_linkage(so)  # loads

    so, rc, out = results["static"]
    assert not (rc == 0 and out.endswith("got 5")), "static libstdc++ formatted the number: test premise gone"
    assert _elf.libstdcxx(so) == "static"
    msg = _elf.check_linkage(so, "g++ -static-libstdc++")
    assert msg and "CXX=g++ -static-libstdc++" in msg and "CXX=/usr/bin/g++" in msg
    with pytest.raises(ImportError, match="its own copy of libstdc"):
        _ext._check_linkage(so)


def test_sources_use_only_the_stable_abi():
    """The host layer is written on the LibTorch stable ABI (torch/csrc/stable, torch/headeronly)
    so one binary loads under every torch >= 2.10: no ATen / c10 header or type in csrc/."""
    root = os.path.join(os.path.dirname(__file__), "..", "csrc")
    banned = re.compile(
        r"#include <(ATen|c10)/|#include <torch/(library|extension)\.h>|\b(at|c10)::|"
        r"\bTORCH_CHECK\(|(?<!STABLE_)TORCH_LIBRARY(_IMPL|_FRAGMENT)?\("
    )
    found = []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith((".h", ".cpp", ".cu")):
                found += [f"{f}: {m.group(0)}" for m in banned.finditer(open(os.path.join(d, f)).read())]
    assert not found, found


def test_built_for_the_stable_abi_and_abi3():
    if not _ext.available():
        pytest.skip(f"extension not built: {_ext.load_error()!r}")
    from dualhead import _C

    assert _C.__file__.endswith(".abi3.so"), _C.__file__  # Python's limited API: any CPython >= 3.10
    info = dict(kv.split("=", 1) for kv in torch.ops.dualhead.build_info().split(","))
    assert info["target_torch"] == "2.10"
    assert not any(n.startswith("libtorch_python") for n in _elf.needed(_C.__file__))
