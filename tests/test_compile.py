"""torch.compile(fullgraph=True) of the public assigners and of the detection loss:
no graph breaks, same results as eager."""

import pytest
import torch
from conftest import DEVICES

import dualhead
from dualhead import _ext
from dualhead.detector.loss import DetectionLoss
from dualhead.detector.nn import Detector
from dualhead.synthetic import make_batch

pytestmark = pytest.mark.skipif(not _ext.available(), reason="compiled extension not built")


def _batch(device="cpu"):
    b = make_batch(B=2, imgsz=128, C=4, n_gt=(1, 6), seed=3, device=device)
    s2, b2 = b.second_head(4)
    return b, s2.to(device), b2.to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_task_aligned_assigner(device):
    b, _, _ = _batch(device)
    ta = dualhead.TaskAlignedAssigner(topk=10, num_classes=4, alpha=0.5, beta=6.0)
    torch._dynamo.reset()
    got = torch.compile(ta, fullgraph=True)(*b.args())
    want = ta(*b.args())
    for g, w in zip(got, want):
        assert torch.equal(g, w)

    def compact(*args):
        a = ta.assign(*args)
        return a.fg_mask, a.gt_idx, a.scores, a.labels, a.bboxes

    for g, w in zip(torch.compile(compact, fullgraph=True)(*b.args()), compact(*b.args())):
        assert torch.equal(g, w)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_dual_assigner(device):
    b, s2, b2 = _batch(device)
    dual = dualhead.DualAssigner(num_classes=4, o2o_topk=7, o2o_topk2=1)
    args = (b.pd_scores, b.pd_bboxes, s2, b2, b.anc_points, b.gt_labels, b.gt_bboxes, b.mask_gt)

    def f(*a):
        r = dual(*a)
        return r.o2m.fg_mask, r.o2m.scores, r.o2o.fg_mask, r.o2o.gt_idx, r.stats.pick, r.stats.rank, r.stats.gap

    torch._dynamo.reset()
    for g, w in zip(torch.compile(f, fullgraph=True)(*args), f(*args)):
        assert torch.equal(g, w)


def test_compile_detection_loss():
    torch.manual_seed(0)
    model = Detector(4, 0.125, imgsz=128).train()
    out, feats = model(torch.rand(2, 3, 128, 128))
    anchors, strides = model.head.anchors(feats)
    b = make_batch(B=2, imgsz=128, C=4, n_gt=(1, 6), seed=5)
    gt = (b.gt_labels.squeeze(-1).long(), b.gt_bboxes, b.mask_gt.squeeze(-1).bool())
    crit = DetectionLoss(4)

    def run(fn):
        leaf = {k: (d.detach().requires_grad_(), lg.detach().requires_grad_()) for k, (d, lg) in out.items()}
        loss, items, _ = fn(leaf, anchors, strides, *gt)
        loss.backward()
        return loss.detach(), torch.stack(list(items.values())), [t.grad for v in leaf.values() for t in v]

    def loss_fn(leaf, anchors, strides, *gt):
        loss, items, stats = crit(leaf, anchors, strides, *gt)
        return loss, items, stats.gap

    torch._dynamo.reset()
    l1, i1, g1 = run(torch.compile(loss_fn, fullgraph=True))
    l0, i0, g0 = run(loss_fn)
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(i1, i0, rtol=1e-5, atol=1e-6)
    for a, c in zip(g1, g0):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-7)


def test_constant_marker_is_the_one_torch_compile_reads():
    """_ext marks has_kernel / reference_forced constant for torch.compile without importing
    torch._dynamo: the attribute it sets must be the one torch's own decorator sets."""
    from dualhead import _ext

    def f():
        return 1

    torch.compiler.assume_constant_result(f)
    assert f.__dict__ == {"_dynamo_marked_constant": True}
    assert _ext.has_kernel._dynamo_marked_constant and _ext.reference_forced._dynamo_marked_constant


def test_import_is_cheap():
    """`import dualhead` loads neither torch._dynamo nor the detector application."""
    import subprocess
    import sys

    code = (
        "import sys, dualhead; bad = [m for m in sys.modules if m.startswith(('torch._dynamo', "
        "'dualhead.detector'))]; print(bad); assert not bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
