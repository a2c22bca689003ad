"""The terminal bar: tqdm drawing in place through Django's OutputWrapper.

tqdm measures the terminal through ``fileno()`` and picks unicode blocks from
``encoding``; ``TqdmFile`` passes both through from the real stream, so the bar
fits the terminal (re-measured at every frame, so a resize is followed) and
uses blocks. Every frame is ``\\r`` + text + erase-to-end-of-line, never
padding spaces: tqdm's padding to the previous frame's length wraps onto a new
line once the terminal got narrower.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

from tqdm import tqdm

#: ANSI "erase from the cursor to the end of the line".
ERASE_LINE = "\x1b[K"
#: Shortest bar worth drawing; below it the frame drops its label.
MIN_BAR = 6


class Stream(Protocol):
    def write(self, msg: str = "", style_func: Any = None, ending: str | None = None) -> None: ...

    def flush(self) -> None: ...


def _plain(text: str) -> str:
    return text


def write(stream: Stream, text: str, ending: str | None = None) -> None:
    """Write uncoloured: Django styles a command's stderr as ERROR (red) on terminals."""
    stream.write(text, style_func=_plain, ending=ending)


class TqdmFile:
    """Lets tqdm write through Django's OutputWrapper, which would add newlines."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        # The real stream behind Django's OutputWrapper: on Django 4.2 the wrapper's
        # own (io.TextIOBase) fileno() and encoding answer instead of delegating.
        self.real = getattr(stream, "_out", stream)

    def write(self, s: str) -> None:
        write(self.stream, s, ending="")

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return int(self.real.fileno())  # type: ignore[union-attr]

    def isatty(self) -> bool:
        isatty = getattr(self.real, "isatty", None)
        return bool(isatty and isatty())

    @property
    def encoding(self) -> str | None:
        return getattr(self.real, "encoding", None)


def columns(file: Any) -> int:
    """The terminal's width now; ``COLUMNS`` (or 80) when the stream is no terminal."""
    try:
        return os.get_terminal_size(file.fileno()).columns
    except (AttributeError, OSError, ValueError):
        try:
            return max(20, int(os.environ.get("COLUMNS", "")))
        except ValueError:
            return 80


#: Frame templates (tqdm ``bar_format``), fullest first; the first that fits is drawn.
#: Dropped in turn: the label, the elapsed time, the rate, the time remaining,
#: the counts. The status (why the run waits) goes last: it is the news.
TEMPLATES = (
    "{desc}: {percentage:3.0f}%|{bar}| {counts} [{elapsed_t}, {rate_t}, {left_t}]{status}",
    "{percentage:3.0f}%|{bar}| {counts} [{elapsed_t}, {rate_t}, {left_t}]{status}",
    "{percentage:3.0f}%|{bar}| {counts} [{rate_t}, {left_t}]{status}",
    "{percentage:3.0f}%|{bar}| {counts} [{left_t}]{status}",
    "{percentage:3.0f}%|{bar}| {counts}{status}",
    "{percentage:3.0f}%|{bar}|{status}",
)


def fit(fields: dict[str, str], width: int) -> str:
    """The fullest template that leaves the bar ``MIN_BAR`` columns of ``width``."""
    for template in TEMPLATES:
        text = template.format(bar="", percentage=100, **fields)
        if len(text) + MIN_BAR <= width:
            return template
    return TEMPLATES[-1]  # tqdm trims it to the width


class Bar(tqdm):
    """A tqdm bar whose text comes from ``fields()`` and that never pads with spaces."""

    monitor_interval = 0  # no monitor thread: the engine's ticker refreshes the bar

    def __init__(self, *args: Any, fields: Callable[[], dict[str, str]], **kwargs: Any) -> None:
        # ``fields()`` gives the texts of "counts" (done/total), "elapsed_t",
        # "rate_t", "left_t" (time remaining) and "status" (why it waits, or "").
        self.fields = fields
        super().__init__(*args, **kwargs)

    @staticmethod
    def status_printer(file: Any) -> Callable[[str], None]:
        def print_status(s: str) -> None:
            file.write("\r" + s.rstrip() + ERASE_LINE)
            file.flush()

        return print_status

    @property
    def format_dict(self) -> MutableMapping[str, Any]:
        values = super().format_dict
        if not hasattr(self, "fields"):
            return values
        # One column spare: a frame exactly as wide as the terminal wraps on some.
        width = columns(self.fp) - 1
        fields = self.fields()
        fields["status"] = f" {fields['status']}" if fields["status"] else ""
        values.update(fields, ncols=width, bar_format=fit({**fields, "desc": self.desc}, width))
        return values
