"""A dependency-free progress bar for ``embedding-operator embed`` on a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

from embedding_operator.voyage.engine import Progress


class ProgressBar:
    """Redraws one stderr line per update; by default only when the stream is a terminal."""

    def __init__(
        self, stream: TextIO | None = None, width: int = 30, enabled: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._drawn = False

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        self.stream.write("\r" + render(progress, self.width))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def render(progress: Progress, width: int = 30) -> str:
    """``[#####-----]  50%  2500/5000 inputs  12,345 tokens  3.2 s``"""
    fraction = progress.done / progress.total if progress.total else 1.0
    filled = round(fraction * width)
    return (
        f"[{'#' * filled}{'-' * (width - filled)}] {fraction:4.0%}  "
        f"{progress.done}/{progress.total} inputs  {progress.tokens:,} tokens  "
        f"{progress.elapsed:.1f} s"
    )
