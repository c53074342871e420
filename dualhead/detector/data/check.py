"""The dataset check run before the first training step: every problem of every kind collected
into one report (file:line, or annotation id), so a user fixes a dataset in one pass, not one
error per run.

Each kind is an error (training does not start) or a counted warning (training starts; the item
is dropped or used as the kind says), following ultralytics' own checks where it has one:

| kind | severity | what happens |
|---|---|---|
| malformed label line / annotation | error | |
| class id not in the names / unknown category id | error | |
| coordinates that are not normalised (YOLO) or outside the image (COCO, > 1 px) | error | |
| negative box size | error | |
| annotation on an unknown image id | error | |
| image missing or unreadable; image size unlike the JSON's | error | |
| zero box size | warning | the box is dropped |
| duplicate label rows | warning | one kept (ultralytics does the same) |
| duplicate images | warning | the image is used once |
| images without labels / annotations | warning | used as background images |
| labels without images | warning | ignored |
| crowd annotations (COCO iscrowd) | warning | not a training target; COCOeval ignores detections on them |
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

ERROR, WARNING = "error", "warning"

# kind -> (severity, what the report says of it)
KINDS = {
    "malformed": (ERROR, "malformed label lines or annotations"),
    "class": (ERROR, "class ids not in the dataset's names"),
    "coords": (ERROR, "box coordinates that are not normalised to [0, 1] or fall outside the image"),
    "negative": (ERROR, "negative box sizes"),
    "image_id": (ERROR, "annotations on an image id the file does not list"),
    "image": (ERROR, "images missing or unreadable"),
    "zero": (WARNING, "zero-size boxes (dropped)"),
    "dup_label": (WARNING, "duplicate label rows (one kept)"),
    "dup_image": (WARNING, "duplicate images (used once)"),
    "background": (WARNING, "images without labels (background images)"),
    "orphan": (WARNING, "label files without an image (ignored)"),
    "crowd": (WARNING, "crowd annotations (ignored regions: not trained on, ignored by COCOeval)"),
}
# a report names every problem up to this many per kind, then counts the rest
SHOWN_PER_KIND = 20


class DatasetError(ValueError):
    """A dataset that fails its check; str() is the whole report."""


class Problems:
    """Problems found in a dataset scan: add(kind, where, what) for each, then report()."""

    def __init__(self):
        self.items: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, where, what: str = "") -> None:
        if kind not in KINDS:
            raise KeyError(kind)
        self.items[kind].append(f"{where}: {what}" if what else str(where))

    def merge(self, other: Problems) -> None:
        for k, v in other.items.items():
            self.items[k].extend(v)

    def errors(self) -> int:
        return sum(len(v) for k, v in self.items.items() if KINDS[k][0] == ERROR)

    def to_json(self) -> dict:
        return {k: list(v) for k, v in self.items.items()}

    @classmethod
    def from_json(cls, d: dict) -> Problems:
        p = cls()
        for k, v in d.items():
            p.items[k].extend(v)
        return p

    def report(self, source: str, shown: int | None = SHOWN_PER_KIND) -> str:
        """The report: a line per kind with its count, then its problems (the first `shown`)."""
        lines = []
        for kind, (sev, what) in KINDS.items():
            found = self.items.get(kind)
            if not found:
                continue
            lines.append(f"  {sev}: {len(found)} {what}")
            lines += [f"    {f}" for f in found[:shown]]
            if shown is not None and len(found) > shown:
                lines.append(f"    ... and {len(found) - shown} more")
        n_err = self.errors()
        head = f"dataset {source}: {n_err} error(s)" if n_err else f"dataset {source}: checked"
        return "\n".join([head, *lines])

    def finish(self, source: str, full_report: Path | None = None) -> None:
        """Raise DatasetError with the report if any error was found; else print the warnings, if
        any, to stderr. Where a kind has more problems than the report shows, all of them are
        written to `full_report` (if given and writable) and the report says so."""
        if not self.items:
            return
        text = self.report(source)
        if full_report is not None and any(len(v) > SHOWN_PER_KIND for v in self.items.values()):
            try:
                full_report.write_text(self.report(source, shown=None) + "\n")
                text += f"\n  every problem: {full_report}"
            except OSError:
                pass
        if self.errors():
            raise DatasetError(text + "\nfix these and run again (docs/detector.md, 'Datasets')")
        print(f"dualhead: {text}", file=sys.stderr)
