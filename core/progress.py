"""Progress of long steps: a bar on a terminal, a plain line now and then anywhere else.

Docker logs, CI and `| tee` are not terminals; a bar would either flood them with carriage
returns or, switched off, leave an hour of silence. There the same object prints one line per
interval (GWD_PROGRESS_SECONDS, default 30 s): "<desc>: 1200/9213 img (13 %), 1m05s, ETA 7m10s".
"""
import math
import os
import sys
import time

from .errors import UserError


def say(text):
    """One line on stderr in one write: print() writes the text and the newline apart, and a line
    another thread prints meanwhile (a data layer's warning) would land between them."""
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


def _fmt(s):
    s = int(s)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class _Lines:
    """The tqdm calls the project uses (update, close, context manager, iteration), as lines."""

    def __init__(self, iterable, total, desc, unit, every):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.every, self.n = every, 0
        self.t0 = self.last = time.monotonic()

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update()

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def _line(self, now):
        el = now - self.t0
        s = f"{self.desc}: {self.n}"
        if self.total:
            s += f"/{self.total} {self.unit} ({100 * self.n / self.total:.0f} %)"
            if self.n:
                s += f", {_fmt(el)}, ETA {_fmt(el / self.n * (self.total - self.n))}"
        else:
            s += f" {self.unit}, {_fmt(el)}"
        say(s)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _line_interval():
    """GWD_PROGRESS_SECONDS, a number of seconds >= 0, or 30 when unset."""
    text = os.environ.get("GWD_PROGRESS_SECONDS", "30")
    try:
        every = float(text)
    except ValueError:
        every = math.nan
    if not every >= 0:      # NaN too; inf: no lines at all
        raise UserError(f"GWD_PROGRESS_SECONDS={text!r}: must be a number of seconds >= 0 between "
                        "progress lines (unset it for 30)")
    return every


def progress(iterable=None, total=None, desc="", unit="it", enabled=True):
    """A progress bar (tqdm) over `iterable` or to be updated by hand up to `total`.
    enabled: False shows nothing (a --quiet flag)."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if enabled and not sys.stderr.isatty():
        return _Lines(iterable if iterable is not None else (), total, desc, unit, _line_interval())
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=not enabled, mininterval=0.5, dynamic_ncols=True)
