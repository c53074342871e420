"""The data pipeline alone, per worker, for any commit of dualhead (old or new dataset API).

One process with one torch thread (a DataLoader worker's setting): shapes dataset + augmentation
+ collate + the uint8 -> float conversion (done in the worker by old commits, by as_float on the
training device by new ones: counted either way), n images per epoch, three epochs (a render
cache shows from the second). Run it with the commit's checkout first on the path:

    PYTHONPATH=<worktree> .venv/bin/python benchmarks/archive/train_pace_2026-12-01/pipe.py 400 <label>
"""

import json
import sys
import time

import torch

import dualhead.data as D

torch.set_num_threads(1)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
label = sys.argv[2] if len(sys.argv) > 2 else "?"
ds = D.DetectionSet(D.build_dataset("shapes", "train", 256, None), D.Augment(), seed=0)
# since 19d512c the epoch travels with the index as (epoch, i); before, set_epoch alone
keyed = "key" in D.DetectionSet.__getitem__.__code__.co_varnames
rates = []
for epoch in range(3):
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)
    t = time.perf_counter()
    for s in range(0, n, 16):
        b = D.collate([ds[(epoch, i) if keyed else i] for i in range(s, s + 16)])
        if b["images"].dtype == torch.uint8:
            D.as_float(b["images"], "cpu")
    rates.append(round(n / (time.perf_counter() - t), 1))
print(json.dumps({"code": label, "images": n, "img_s_per_epoch": rates}))
