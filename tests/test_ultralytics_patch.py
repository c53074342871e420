"""dualhead.integrations.ultralytics: YOLOv10n's loss with the patch equals ultralytics' own."""

import re

import pytest
import torch

pytest.importorskip("ultralytics", reason="ultralytics==8.4.190 is a test extra")
import ultralytics.utils.loss as uloss  # noqa: E402
from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402

from dualhead.integrations import ultralytics as dhu  # noqa: E402


def random_batch(g, B=2, imgsz=320, n=14, nc=80):
    return {
        "img": torch.rand(B, 3, imgsz, imgsz, generator=g),
        "batch_idx": torch.randint(0, B, (n,), generator=g).sort().values.float(),
        "cls": torch.randint(0, nc, (n, 1), generator=g).float(),
        "bboxes": torch.cat((torch.rand(n, 2, generator=g) * 0.8 + 0.1, torch.rand(n, 2, generator=g) * 0.3 + 0.01), 1),
    }


@pytest.fixture(scope="module")
def yolov10n():
    torch.manual_seed(0)
    m = DetectionModel("yolov10n.yaml", nc=80, verbose=False)
    m.args = get_cfg()
    return m.train()


def test_patch_unpatch_and_context_manager():
    orig = uloss.TaskAlignedAssigner
    dhu.patch()
    assert uloss.TaskAlignedAssigner is dhu.UltralyticsTaskAlignedAssigner
    dhu.patch()  # idempotent
    dhu.unpatch()
    assert uloss.TaskAlignedAssigner is orig
    with dhu.patched():
        assert uloss.TaskAlignedAssigner is dhu.UltralyticsTaskAlignedAssigner
    assert uloss.TaskAlignedAssigner is orig


def test_yolov10n_loss_equals_ultralytics(yolov10n):
    own = yolov10n.init_criterion()
    with dhu.patched():
        ours = yolov10n.init_criterion()
    assert type(ours.one2many.assigner) is dhu.UltralyticsTaskAlignedAssigner
    assert (ours.one2many.assigner.topk, ours.one2one.assigner.topk, ours.one2one.assigner.topk2) == (10, 7, 1)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        batch = random_batch(g)
        preds = yolov10n(batch["img"])
        (lu, iu), (ld, idd) = own(preds, batch), ours(preds, batch)
        assert torch.allclose(ld, lu, rtol=1e-5, atol=0), (lu, ld)
        for k in iu:
            assert torch.allclose(idd[k], iu[k], rtol=1e-5, atol=0), k
        # gradients flow the same way
        gu = torch.autograd.grad(lu.sum(), yolov10n.model[-1].cv3[0][-1].weight, retain_graph=True)[0]
        gd = torch.autograd.grad(ld.sum(), yolov10n.model[-1].cv3[0][-1].weight)[0]
        assert torch.allclose(gd, gu, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    "version,difference",
    [
        ("8.2.103", "no small-box floor and no topk2"),
        ("8.3.253", "no small-box floor and no topk2"),
        ("8.4.0", "shorter than stride[0] to stride[1]"),
        ("8.4.127", "shorter than stride[0] to stride[1]"),
    ],
)
def test_releases_that_assign_differently_are_refused(version, difference):
    """Behaviour changed without a visible constructor parameter (the floor rule at 8.4.128; the
    floor and topk2 at 8.4.0): the patch names the release and the nearest supported one."""
    with pytest.raises(
        dhu.UnsupportedRelease,
        match=rf"installed ultralytics {version} differs: .*"
        rf"{re.escape(difference)}.*Nearest supported release: 8\.4\.128",
    ):
        dhu.check_release(version)


def test_supported_and_newer_releases():
    for v in ("8.4.128", "8.4.150", "8.4.190"):
        dhu.check_release(v)
    with pytest.warns(RuntimeWarning, match="newer than the newest release checked"):
        dhu.check_release("8.5.0")


def test_patch_refuses_an_old_release_and_changes_nothing(monkeypatch):
    import ultralytics

    monkeypatch.setattr(ultralytics, "__version__", "8.3.253")
    orig = uloss.TaskAlignedAssigner
    with pytest.raises(dhu.UnsupportedRelease, match="8.3.253"):
        dhu.patch()
    assert uloss.TaskAlignedAssigner is orig and not dhu.is_patched()
    dhu.patch(force=True)  # for measuring the difference (benchmarks/compat_ultralytics.py)
    assert uloss.TaskAlignedAssigner is dhu.UltralyticsTaskAlignedAssigner
    dhu.unpatch()
