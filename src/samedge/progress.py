"""How far a run is: step N/M (or training seconds out of train.time_budget_s) with an ETA.
On a terminal, tqdm's bar; elsewhere (pipeline and cluster logs, where a bar is one endless line)
the same status as a log line every LOG_EVERY_S seconds and at every tenth of the run. While the bar
is shown, console log lines go through tqdm.write, so they print above the bar, not onto it."""
from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack
from typing import Any, Protocol, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

LOG_EVERY_S = 30.0
LOG_FRACTION = 0.1
# By budget, the position is training seconds (measurements excluded), so the rate is not shown.
BUDGET_FORMAT = "{desc}: {percentage:3.0f}% {n:.1f}/{total:.1f} training s [{elapsed}<{remaining}{postfix}]"

log = logging.getLogger("samedge.train")


class Position(Protocol):
    step: int
    train_seconds: float


class Progress:
    """Counts steps when the run has max_steps, else training seconds against the budget."""

    def __init__(self, desc: str, state: Position, max_steps: int | None, budget_s: float | None,
                 stream: TextIO | None = None) -> None:
        self.state, self.desc = state, desc
        self.by_steps = bool(max_steps)
        self.total = max_steps if self.by_steps else budget_s
        self.unit = "step" if self.by_steps else "s"
        self.format = None if self.by_steps else BUDGET_FORMAT
        self.initial = self._position()
        self.postfix = ""
        stream = stream or sys.stderr
        self.bar = tqdm(total=self.total, initial=self.initial, unit=self.unit, desc=desc, mininterval=2.0,
                        bar_format=self.format, file=stream) if stream.isatty() else None
        self._redirect = ExitStack()
        if self.bar is not None:
            self._redirect.enter_context(logging_redirect_tqdm())
        self.start = self.last_log = time.monotonic()
        self.logged = self.initial
        self.next_mark = self.initial + LOG_FRACTION * self.total

    def _position(self) -> float:
        """Capped at the total: the last step may overshoot the budget."""
        return self.state.step if self.by_steps else min(self.state.train_seconds, self.total)

    def set_postfix(self, **values: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values)
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def update(self) -> None:
        position = self._position()
        if self.bar is not None:
            self.bar.update(position - self.bar.n)
            return
        now = time.monotonic()
        if now - self.last_log >= LOG_EVERY_S or position >= self.next_mark:
            self._log(position, now)

    def _log(self, position: float, now: float) -> None:
        self.last_log, self.logged = now, position
        while self.next_mark <= position:
            self.next_mark += LOG_FRACTION * self.total
        log.info("%s", tqdm.format_meter(position, self.total, now - self.start, prefix=self.desc, unit=self.unit,
                                         initial=self.initial, postfix=self.postfix or None,
                                         bar_format=self.format, ncols=None if self.format else 0))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self._redirect.close()
        elif self._position() > self.logged:  # the final state, unless just logged
            self._log(self._position(), time.monotonic())
