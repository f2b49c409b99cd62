"""Progress of long offline work: a tqdm bar on a terminal, one log line per step otherwise.

``RECSYS_PROGRESS``: ``auto`` (default: a bar when stderr is a terminal), ``bar``, ``lines`` or
``off``. In CI logs (no terminal) nothing is redrawn: every step writes exactly one line, with
its duration, to the ``recsys.progress`` logger.

    with Steps("train", ["load", "build", "write"]) as steps:
        steps.step("load"); ...
    for batch in track(batches, "bulk load", total=n, unit="customers"): ...
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import TypeVar

from tqdm import tqdm

log = logging.getLogger("recsys.progress")
T = TypeVar("T")


def peak_resident_gb() -> float:
    """This process's peak resident memory so far (``ru_maxrss``: KiB on Linux, bytes on
    macOS; 0 where there is no ``resource`` module)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**3 if sys.platform == "darwin" else 1024**2)


def mode() -> str:
    """``bar``, ``lines`` or ``off`` (see the module docstring)."""
    wanted = os.environ.get("RECSYS_PROGRESS", "auto").strip().lower()
    if wanted in ("bar", "lines", "off"):
        return wanted
    return "bar" if sys.stderr.isatty() else "lines"


class Steps:
    """Named steps of one job: a bar that advances per step, or one line per finished step."""

    def __init__(self, label: str, names: Sequence[str]) -> None:
        self.label, self.names, self.mode = label, list(names), mode()
        self.current: str | None = None
        self.started = self.step_started = time.perf_counter()
        self.step_cpu = time.process_time()
        self.done = 0
        self.bar: tqdm | None = None
        if self.mode == "bar":
            self.bar = tqdm(total=len(self.names), desc=label, unit="step", leave=True)

    def step(self, name: str) -> None:
        """Finish the running step (if any) and start ``name``."""
        self._finish()
        self.current, self.step_started = name, time.perf_counter()
        self.step_cpu = time.process_time()
        if self.bar is not None:
            self.bar.set_postfix_str(name)

    def _finish(self) -> None:
        if self.current is None:
            return
        self.done += 1
        seconds = time.perf_counter() - self.step_started
        if self.bar is not None:
            self.bar.update(1)
        elif self.mode == "lines":
            total = max(len(self.names), self.done)
            cpu = time.process_time() - self.step_cpu
            log.info(
                "%s [%d/%d] %s: %.1f s (%.1f CPU s, peak resident %.2f GB)",
                self.label, self.done, total, self.current, seconds, cpu, peak_resident_gb(),
            )  # fmt: skip
        self.current = None

    def close(self) -> None:
        self._finish()
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines":
            log.info("%s: done in %.1f s", self.label, time.perf_counter() - self.started)

    def __enter__(self) -> Steps:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        elif self.bar is not None:
            self.bar.close()


def track(
    items: Iterable[T], label: str, total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """``items`` with a bar on a terminal; otherwise one line when the loop ends."""
    how = mode()
    if how == "bar":
        yield from tqdm(items, desc=label, total=total, unit=unit, unit_scale=True)
        return
    started, count = time.perf_counter(), 0
    for item in items:
        count += 1
        yield item
    if how == "lines":
        log.info("%s: %s %s in %.1f s", label, f"{count:,}", unit, time.perf_counter() - started)
