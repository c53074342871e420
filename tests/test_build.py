"""What was built: CPU kernels always; CUDA kernels (with sm_90 code) when CI expects them."""

import os
import subprocess
import sys

import pytest

from dualhead import _ext

expect_cuda = os.environ.get("DUALHEAD_EXPECT_CUDA") == "1"


def test_extension_loaded():
    if not _ext.available() and not expect_cuda:
        pytest.skip(f"extension not built: {_ext.load_error()!r}")
    assert _ext.available(), f"extension failed to load: {_ext.load_error()!r}"
    assert _ext.has_kernel("box_iou", "CPU")


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
    for name in ("box_iou_kernel", "gt_rows_kernel", "gt_rows_split_kernel", "resolve_kernel", "stats_kernel"):
        assert any(name in k for k in kernels), f"{name} missing from sm_90 code"


def test_info_command():
    out = subprocess.run([sys.executable, "-m", "dualhead.cli", "info"], capture_output=True, text=True, check=True).stdout
    assert "torch" in out
    if _ext.available():
        assert "CPU kernels : yes" in out
    if expect_cuda:
        assert "CUDA kernels: yes" in out and "sm_90" in out
