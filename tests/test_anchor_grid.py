"""dualhead::anchor_grid: recognition of ultralytics' multi-level anchor grid, and the assign
kernels' grid path against their general scan."""

import pytest
import torch
from conftest import CONFIGS, fresh_seed

import dualhead
from dualhead import _ext
from dualhead.anchors import anchor_points
from dualhead.synthetic import make_batch

pytestmark = pytest.mark.skipif(not _ext.available(), reason=f"extension not built: {_ext.load_error()!r}")


def test_standard_grid_is_recognised():
    for imgsz in (320, 640, 1280, 96):
        grid = torch.ops.dualhead.anchor_grid(anchor_points(imgsz))
        assert grid.tolist() == [
            [sum((imgsz // t) ** 2 for t in (8, 16, 32)[:i]), imgsz // s, imgsz // s, s]
            for i, s in enumerate((8, 16, 32))
        ]
    rect = torch.cat([anchor_points(640)[:6400].view(80, 80, 2)[:40].reshape(-1, 2)])  # 40 x 80 level
    assert torch.ops.dualhead.anchor_grid(rect).tolist() == [[0, 80, 40, 8]]
    assert torch.ops.dualhead.anchor_grid(anchor_points(640).flip(0)).shape == (0, 4)
    assert torch.ops.dualhead.anchor_grid(anchor_points(640) + 0.25).shape == (0, 4)


def test_anchor_grid_opcheck():
    torch.library.opcheck(torch.ops.dualhead.anchor_grid.default, (anchor_points(320),))
    torch.library.opcheck(torch.ops.dualhead.anchor_grid.default, (anchor_points(320).flip(0),))


@pytest.mark.parametrize("name,kw", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_grid_path_equals_general_path(name, kw):
    """One extra far-away anchor breaks grid recognition; every other output must be identical."""
    bt = make_batch(B=2, C=7, seed=fresh_seed(), n_gt=(5, 60))
    extra = torch.tensor([[-1e4, -1e4]])
    anc2 = torch.cat((bt.anc_points, extra))
    assert torch.ops.dualhead.anchor_grid(anc2).shape[0] == 0
    s2 = torch.cat((bt.pd_scores, bt.pd_scores[:, :1]), 1)
    b2 = torch.cat((bt.pd_bboxes, bt.pd_bboxes[:, :1]), 1)
    a = dualhead.ops.assign(*bt.args(), **kw)
    g = dualhead.ops.assign(s2, b2, anc2, *bt.args()[3:], **kw)
    N = bt.anc_points.shape[0]
    for x, y in zip(
        (a.fg_mask, a.gt_idx, a.labels, a.bboxes, a.scores), (g.fg_mask, g.gt_idx, g.labels, g.bboxes, g.scores)
    ):
        assert torch.equal(x, y[:, :N])
