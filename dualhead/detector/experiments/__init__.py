"""Experiments on the detector, apart from the product: the ablation (ablate.py), ultralytics'
own YOLOv10n / YOLOv8n trained on the same data as its outside anchor (ultralytics_anchor.py), and
the training benchmarks (bench_train.py: the data pipeline and the loop; bench_train_step.py: an
ultralytics training step with and without dualhead). Run from the `dualhead` command."""
