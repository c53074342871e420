"""Video in and out for `dualhead predict`, with PyAV (FFmpeg's libraries, no system FFmpeg):
a video file or a webcam opened as frames of uint8 RGB, and an H.264 MP4 written frame by frame."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".gif"}


def is_stream(source) -> bool:
    """A video file or a webcam number."""
    if not isinstance(source, (str, Path)):
        return False
    return str(source).isdigit() or Path(source).suffix.lower() in VIDEO_SUFFIXES


def open_stream(source):
    """(PyAV container, its video stream, output name) of a video file or a webcam number."""
    name = f"webcam{source}" if str(source).isdigit() else Path(source).stem
    try:
        if str(source).isdigit():
            container = av.open(f"/dev/video{source}", format="v4l2")
        else:
            if not Path(source).is_file():
                raise ValueError(f"--source {str(source)!r}: no such video file")
            container = av.open(str(source))
    except av.FFmpegError as e:
        what = f"webcam /dev/video{source}" if str(source).isdigit() else "a readable video"
        raise ValueError(f"--source {str(source)!r} is not {what} ({e})") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"--source {str(source)!r} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream, name


def frames(container, stream, limit):
    """The stream's frames as uint8 RGB arrays, at most limit of them."""
    for i, frame in enumerate(container.decode(stream)):
        if limit and i >= limit:
            return
        yield frame.to_ndarray(format="rgb24")


def batches(items, n: int):
    batch = []
    for x in items:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


class VideoWriter:
    """An H.264 MP4 (yuv420p: even width and height, an odd last row or column is cropped)."""

    def __init__(self, path: Path, w: int, h: int, fps):
        self.c = av.open(str(path), mode="w")
        self.s = self.c.add_stream("libx264", rate=fps)
        self.s.width, self.s.height, self.s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"

    def write(self, rgb: np.ndarray) -> None:
        rgb = np.ascontiguousarray(rgb[: self.s.height, : self.s.width])
        for packet in self.s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            self.c.mux(packet)

    def close(self) -> None:
        for packet in self.s.encode():
            self.c.mux(packet)
        self.c.close()
