"""dualhead::box_iou (C++/CUDA, shared math header) against the torch reference."""

import pytest
import torch
from conftest import DEVICES, fresh_seed

import dualhead
from dualhead import _ext

needs_ext = pytest.mark.skipif(not _ext.available(), reason=f"extension not built: {_ext.load_error()!r}")


def rand_boxes(n, g, scale=100.0):
    xy = torch.rand(n, 2, generator=g) * scale
    wh = torch.rand(n, 2, generator=g) * scale * 0.5
    return torch.cat((xy, xy + wh), 1)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("contiguous", [True, False])
def test_box_iou_matches_reference(device, kind, dtype, contiguous):
    g = torch.Generator().manual_seed(fresh_seed())
    b1, b2 = rand_boxes(37, g).to(dtype), rand_boxes(23, g).to(dtype)
    if not contiguous:
        b1 = torch.cat((b1, b1), 1)[:, ::2].contiguous().t().contiguous().t()  # column-major view
        b2 = b2.t().contiguous().t()
        assert not b1.is_contiguous()
    got = dualhead.ops.box_iou(b1.to(device), b2.to(device), kind).cpu()
    ref = dualhead.reference.box_iou(b1, b2, kind)
    assert got.dtype == torch.float32 and got.shape == (37, 23)
    # Same op order as torch; only atan differs by ulps (libm vs torch's vectorised SLEEF / CUDA atanf).
    tol = 2e-6 if (kind == "ciou" or device != "cpu") else 0.0
    assert (got - ref).abs().max().item() <= tol


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_box_iou_empty(device):
    out = dualhead.ops.box_iou(torch.zeros(0, 4, device=device), torch.zeros(5, 4, device=device))
    assert out.shape == (0, 5)


@needs_ext
def test_box_iou_opcheck():
    g = torch.Generator().manual_seed(0)
    torch.library.opcheck(torch.ops.dualhead.box_iou.default, (rand_boxes(5, g), rand_boxes(4, g), 3))
