"""The result of a dataset scan kept in a file beside the labels (as ultralytics keeps its
labels/<split>.cache), so the second run of a large dataset starts in a fraction of the first's
time. The key is a hash of every scanned file's path, size and modification time: editing,
adding or removing a label or an image makes the cache stale and the scan runs again.

Stored as an .npz without pickles (np.load(allow_pickle=False)): arrays plus one JSON string.
A cache that cannot be written (a read-only dataset) is skipped with a note, never an error.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

VERSION = 1


def files_key(paths, extra: str = "") -> str:
    """sha256 over (path, size, mtime_ns) of each path ('-' for a missing one) and `extra`."""
    h = hashlib.sha256(f"{VERSION}|{extra}".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|-\n".encode())
    return h.hexdigest()


def load(path: Path, key: str) -> tuple[dict, dict] | None:
    """(arrays, meta) of a cache whose key matches, else None (missing, stale or unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("key") != key:
                return None
            return {k: z[k] for k in z.files if k != "meta"}, meta
    except (OSError, ValueError, KeyError):
        return None


def save(path: Path, key: str, arrays: dict, meta: dict) -> None:
    """Written to a temporary name and renamed: a reader never sees half a file."""
    buf = io.BytesIO()
    np.savez(buf, meta=np.asarray(json.dumps({**meta, "key": key})), **arrays)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        print(f"dualhead: note: dataset cache not written ({path}: {e.strerror or e})", file=sys.stderr)
