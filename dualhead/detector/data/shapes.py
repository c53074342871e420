"""The embedded default dataset: procedurally drawn shapes, generated from a fixed seed (no download).

Each image is a textured, cluttered background with 1..max_objects filled shapes of five classes
(circle, rectangle, triangle, cross, ring) in random colours, sizes log-uniform over
`sizes` px (default 6..120 at 256 px, scaled with imgsz; small objects included), drawn in order so later shapes occlude earlier ones. The
label box is the tight box of an object's *visible* pixels (COCO convention); objects less than
`min_visible` visible are dropped from the labels. Sample i of a split is a pure function of
(seed, split, i), so every run, worker and process sees the same data.
"""

from __future__ import annotations

import copy
import multiprocessing
import signal

import numpy as np
from tqdm import tqdm

CLASSES = ("circle", "rectangle", "triangle", "cross", "ring")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_PRERENDER_CHUNK = (
    25  # images per task of the prerender pool: tasks big enough to amortise the pipe, small enough to balance
)
_render_worker: ShapesDataset | None = None


def _pool_context():
    # fork where there is one (the dataset is already in memory, nothing is re-imported);
    # elsewhere the platform's default, which pickles the blank dataset once per process
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _set_render_worker(ds):
    global _render_worker
    _render_worker = ds
    # Ctrl-C reaches the whole process group: the training process stops the pool and says so;
    # a worker that took the KeyboardInterrupt itself would print a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _render_chunk_in_worker(idx):
    return _render_worker._render_chunk(idx)


def _shape_mask(cls: int, w: int, h: int, rng) -> np.ndarray:
    """Boolean (h, w) mask of one shape filling its w x h window."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (x + 0.5) / w * 2 - 1, (y + 0.5) / h * 2 - 1  # [-1, 1] over the window
    if cls == 0:  # circle / ellipse
        return u * u + v * v <= 1
    if cls == 1:  # rectangle
        return np.ones((h, w), bool)
    if cls == 2:  # triangle, apex up or down
        up = rng.random() < 0.5
        vv = v if up else -v
        return (vv >= -1) & (np.abs(u) <= (vv + 1) / 2)
    if cls == 3:  # cross (plus sign)
        t = rng.uniform(0.25, 0.45)
        return (np.abs(u) <= t) | (np.abs(v) <= t)
    r2 = u * u + v * v  # ring
    inner = rng.uniform(0.35, 0.65)
    return (r2 <= 1) & (r2 >= inner * inner)


class ShapesDataset:
    """Procedural detection data. Returns (image uint8 (H, W, 3), boxes (n, 4) float32 xyxy px,
    labels (n,) int64) for index i.

    Defaults are the 'default' difficulty; `easy()` gives few, large, unoccluded objects on a
    plain background (for quick tests that must show learning)."""

    def __init__(
        self,
        split: str = "train",
        length: int = 4000,
        imgsz: int = 256,
        seed: int = 0,
        max_objects: int = 12,
        sizes=None,
        clutter: bool = True,
        occlusion: bool = True,
        min_visible: float = 0.3,
        classes: int = len(CLASSES),
        cache_mb: float = 1024,
    ):
        if split not in _SPLIT_IDS:
            raise ValueError(f"split must be one of {sorted(_SPLIT_IDS)}, got {split!r}")
        if not (1 <= classes <= len(CLASSES)):
            raise ValueError(f"classes must be in 1..{len(CLASSES)}, got {classes!r}")
        if not (isinstance(length, int) and length >= 1):
            raise ValueError(f"length must be an int >= 1, got {length!r}")
        if sizes is None:  # 6..120 px at 256 px, scaled with the image
            sizes = (max(4, round(imgsz * 6 / 256)), round(imgsz * 120 / 256))
        if not (0 < sizes[0] <= sizes[1] <= imgsz):
            raise ValueError(f"sizes must satisfy 0 < min <= max <= imgsz, got {sizes!r}")
        self.split, self.length, self.imgsz, self.seed = split, length, imgsz, seed
        self.max_objects, self.sizes, self.clutter, self.occlusion = max_objects, sizes, clutter, occlusion
        self.min_visible, self.nc = min_visible, classes
        self.names = CLASSES[:classes]
        # Rendered samples, kept (read-only) up to cache_mb: an image is drawn once per process
        # instead of once per epoch -- rendering was 60 % of a data worker's time per image.
        self._cache: dict[int, tuple] = {}
        self._cache_left = int(cache_mb * 2**20)

    @classmethod
    def easy(cls, split="train", length=512, imgsz=128, seed=0, classes=2):
        return cls(
            split,
            length,
            imgsz,
            seed,
            max_objects=3,
            sizes=(imgsz * 3 // 16, imgsz // 2),
            clutter=False,
            occlusion=False,
            classes=classes,
        )

    def __len__(self):
        return self.length

    def __getitem__(self, i: int):
        if not (0 <= i < self.length):
            raise IndexError(f"index {i} out of range for {self.length} images")
        hit = self._cache.get(i)
        if hit is None:
            hit = self._keep(i, self._render(i))
        return hit

    def _keep(self, i: int, hit: tuple) -> tuple:
        if hit[0].nbytes <= self._cache_left:
            for a in hit:
                a.flags.writeable = False  # shared by every later epoch: nobody may draw on it
            self._cache[i] = hit
            self._cache_left -= hit[0].nbytes
        return hit

    def prerender(self, processes: int, progress: bool = False) -> int:
        """Render every sample the cache has room for and does not hold yet, over `processes`
        processes, before training starts; returns how many were rendered.

        Why: rendered lazily, the first epoch's images are drawn by the data loader's workers
        while the training step's threads run on the same cores; on 2 cores the step then runs
        ~45 % slower for a whole epoch (each time a worker takes a core, the step's other thread
        waits for it). Drawn up front on all cores, the same images (a sample is a pure function
        of (seed, split, i)) cost their render time once and the first epoch runs at the pace of
        the others. Forked data workers inherit the filled cache."""
        per = self.imgsz * self.imgsz * 3
        todo = [i for i in range(self.length) if i not in self._cache][: max(0, self._cache_left // per)]
        if not todo:
            return 0

        bar = tqdm(
            total=len(todo),
            desc=f"rendering {self.split} images",
            disable=None if progress else True,
            leave=False,
            mininterval=1,
        )
        processes = max(1, min(processes, len(todo) // _PRERENDER_CHUNK))
        chunks = [todo[k : k + _PRERENDER_CHUNK] for k in range(0, len(todo), _PRERENDER_CHUNK)]
        if processes == 1:
            done = map(self._render_chunk, chunks)
            pool = None
        else:
            # a blank copy (no cache) is what reaches each process, once, through the initializer
            blank = copy.copy(self)
            blank._cache = {}
            pool = _pool_context().Pool(processes, _set_render_worker, (blank,))
            done = pool.imap(_render_chunk_in_worker, chunks)
        try:
            for part in done:
                for i, hit in part:
                    self._keep(i, hit)
                bar.update(len(part))
        finally:
            if pool is not None:
                pool.terminate()
            bar.close()
        return len(todo)

    @property
    def in_memory(self) -> bool:
        """Every sample rendered and kept (after prerender, when the cache has room for all)."""
        return len(self._cache) == self.length

    def _render_chunk(self, idx):
        return [(i, self._render(i)) for i in idx]

    def _render(self, i: int):
        rng = np.random.default_rng((self.seed, _SPLIT_IDS[self.split], i))
        S = self.imgsz
        img = self._background(rng)
        owner = np.full((S, S), -1, np.int32)
        objs = []
        n = int(rng.integers(1, self.max_objects + 1))
        lo, hi = np.log(self.sizes[0]), np.log(self.sizes[1])
        for k in range(n):
            c = int(rng.integers(0, self.nc))
            side = float(np.exp(rng.uniform(lo, hi)))
            aspect = float(np.exp(rng.uniform(-0.4, 0.4)))
            w, h = max(3, int(round(side * aspect))), max(3, int(round(side / aspect)))
            w, h = min(w, S), min(h, S)
            for _ in range(10):  # without occlusion, retry placements that overlap earlier objects
                x0, y0 = int(rng.integers(0, S - w + 1)), int(rng.integers(0, S - h + 1))
                if self.occlusion or (owner[y0 : y0 + h, x0 : x0 + w] < 0).all():
                    break
            else:
                continue
            m = _shape_mask(c, w, h, rng)
            colour = rng.integers(0, 256, 3)
            shade = rng.normal(0, 8, (h, w))  # a little texture so a flat fill is not the only cue
            view = img[y0 : y0 + h, x0 : x0 + w]
            for ch in range(3):  # a plane at a time: numpy's inner loops run over pixels, not over 3 channels
                view[..., ch][m] = np.clip(colour[ch] + shade[m], 0, 255).astype(np.uint8)
            owner[y0 : y0 + h, x0 : x0 + w][m] = k
            objs.append((k, c, m.sum(), x0, y0, w, h))
        boxes, labels = [], []
        for k, c, area, x0, y0, w, h in objs:
            # object k's visible pixels lie inside its own window: search there, not the whole image
            ys, xs = np.nonzero(owner[y0 : y0 + h, x0 : x0 + w] == k)
            if ys.size < self.min_visible * area or ys.size == 0:
                continue
            boxes.append((x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1))
            labels.append(c)
        img = np.clip(img.astype(np.int16) + rng.normal(0, 6, img.shape).astype(np.int16), 0, 255).astype(np.uint8)
        return (img, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64))

    def _grid(self):
        """(y, x) pixel coordinates / imgsz as float32 (S, S) planes, made once per dataset."""
        if getattr(self, "_yx", None) is None:
            S = self.imgsz
            self._yx = tuple(np.mgrid[0:S, 0:S].astype(np.float32) / S)
            for a in self._yx:
                a.flags.writeable = False
        return self._yx

    def _background(self, rng) -> np.ndarray:
        S = self.imgsz
        y, x = self._grid()
        c0, c1 = rng.integers(40, 216, 3), rng.integers(40, 216, 3)
        d = rng.uniform(-1, 1, 2)
        t = np.clip((x * d[0] + y * d[1] + 1) / 2, 0, 1)
        img = np.empty((S, S, 3), np.uint8)
        for ch in range(3):  # per plane: the same float64 ops as over (S, S, 3), several times faster
            img[..., ch] = c0[ch] * (1 - t) + c1[ch] * t
        if self.clutter:  # random line segments and specks: structure that is not an object
            for _ in range(int(rng.integers(5, 25))):
                x0, y0 = rng.integers(0, S, 2)
                ang, ln = rng.uniform(0, np.pi), rng.uniform(5, S / 3)
                steps = np.linspace(0, ln, int(ln) + 1)
                xs = np.clip((x0 + steps * np.cos(ang)).astype(int), 0, S - 1)
                ys = np.clip((y0 + steps * np.sin(ang)).astype(int), 0, S - 1)
                img[ys, xs] = rng.integers(0, 256, 3)
            n = int(rng.integers(50, 300))
            img[rng.integers(0, S, n), rng.integers(0, S, n)] = rng.integers(0, 256, (n, 3))
        return img
