"""Issue #6: a few ultralytics training iterations (YOLOv10n, YOLO11n) on a YOLO-format dataset
written here, with and without dualhead's assigner; the training losses agree."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("ultralytics")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from test_detector import _write_yolo  # noqa: E402
from ultralytics_train import train_losses  # noqa: E402


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolo")
    _write_yolo(root, n=8, imgsz=64)
    yaml = root / "data.yaml"
    yaml.write_text(
        f"path: {root}\ntrain: images\nval: images\nnames:\n"
        + "".join(f"  {i}: {n}\n" for i, n in enumerate(("circle", "rectangle", "triangle", "cross", "ring")))
    )
    return yaml


@pytest.mark.parametrize("model", ["yolov10n.yaml", "yolo11n.yaml"])
def test_ultralytics_training_with_and_without_patch(model, data_yaml, tmp_path):
    from ultralytics.utils.tal import TaskAlignedAssigner as UltralyticsTAL

    from dualhead.integrations import ultralytics as dh_ultralytics

    ref, cls_ref = train_losses(str(data_yaml), model, patch=False, project=str(tmp_path))
    got, cls_got = train_losses(str(data_yaml), model, patch=True, project=str(tmp_path))
    assert cls_ref is UltralyticsTAL and issubclass(cls_got, dh_ultralytics.UltralyticsTaskAlignedAssigner)
    assert not dh_ultralytics.is_patched()
    assert len(ref) == len(got) == 2  # 8 images, batch 4, one epoch
    for r, g in zip(ref, got):
        assert g == pytest.approx(r, rel=1e-4, abs=1e-5)
