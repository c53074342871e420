"""dualhead.integrations.ultralytics: YOLOv10n's loss with the patch equals ultralytics' own."""

import pytest
import torch

pytest.importorskip("ultralytics", reason="ultralytics==8.4.190 is a test extra")
import ultralytics.utils.loss as uloss  # noqa: E402
from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402

import dualhead  # noqa: E402
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
    assert issubclass(uloss.TaskAlignedAssigner, dhu.UltralyticsTaskAlignedAssigner)
    dhu.patch()  # idempotent
    dhu.unpatch()
    assert uloss.TaskAlignedAssigner is orig
    with dhu.patched():
        assert issubclass(uloss.TaskAlignedAssigner, dhu.UltralyticsTaskAlignedAssigner)
    assert uloss.TaskAlignedAssigner is orig


def test_yolov10n_loss_equals_ultralytics(yolov10n):
    own = yolov10n.init_criterion()
    with dhu.patched():
        ours = yolov10n.init_criterion()
    assert isinstance(ours.one2many.assigner, dhu.UltralyticsTaskAlignedAssigner)
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
    "version,floor",
    [
        ("8.0.100", None),
        ("8.2.103", None),
        ("8.3.253", None),
        ("8.4.0", (8.0, 16.0)),
        ("8.4.127", (8.0, 16.0)),
        ("8.4.128", (16.0, 16.0)),
        ("8.4.190", (16.0, 16.0)),
    ],
)
def test_patch_assigns_with_each_releases_rules(monkeypatch, version, floor):
    """The small-box floor changed without a visible constructor parameter (none before 8.4.0;
    sides < stride[0] -> stride_val in 8.4.0-8.4.127; < stride_val from 8.4.128): patch() reads
    the release and the assigners it builds carry that release's Convention."""
    import ultralytics

    monkeypatch.setattr(ultralytics, "__version__", version)
    dhu.check_release(version)
    with dhu.patched():
        a = uloss.TaskAlignedAssigner(topk=10, num_classes=80, alpha=0.5, beta=6.0, stride=[8, 16, 32])
    c = a.convention
    assert c == dualhead.Convention.ultralytics(version)
    if floor is None:
        assert not c.round_trip and (c.floor_below, c.floor_to) == (0.0, 0.0)
    else:
        assert c.round_trip and (c.floor_below, c.floor_to) == floor


def test_supported_and_newer_releases():
    for v in ("8.0.100", "8.1.34", "8.4.128", "8.4.150", "8.4.190"):
        dhu.check_release(v)
    with pytest.warns(RuntimeWarning, match="newer than the newest release checked"):
        dhu.check_release("8.5.0")


def test_patch_refuses_an_unchecked_release_and_changes_nothing(monkeypatch):
    import ultralytics

    monkeypatch.setattr(ultralytics, "__version__", "8.0.99")
    orig = uloss.TaskAlignedAssigner
    with pytest.raises(
        dhu.UnsupportedRelease, match=r"installed ultralytics 8\.0\.99 is older.*Nearest supported release: 8\.0\.100"
    ):
        dhu.patch()
    assert uloss.TaskAlignedAssigner is orig and not dhu.is_patched()
    dhu.patch(force=True)  # for measuring the difference (benchmarks/compat_ultralytics.py)
    assert issubclass(uloss.TaskAlignedAssigner, dhu.UltralyticsTaskAlignedAssigner)
    dhu.unpatch()
