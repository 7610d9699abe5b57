"""Progress of a stage's training loop: tqdm bars on a terminal, plain lines elsewhere.

``train.progress`` picks the mode:

* ``auto`` (default): bars when stderr is a terminal, otherwise plain lines (``log``), so a
  search piped to a file or run by a scheduler writes no carriage returns or cursor escapes.
* ``bar``: nested tqdm bars (epochs, steps of the epoch), even when stderr is not a terminal.
* ``log``: one plain line every ``train.progress_every`` steps and one at each epoch end.
* ``off``: nothing.

The old booleans are aliases: ``true`` is ``auto``, ``false`` is ``off``.

Example of the plain lines::

    search: epoch 1/3 step 20/28 (71%) loss 2.2871 lr 0.025 4.1s
    search: epoch 1/3 done 28 steps val_acc 0.1840 val_loss 2.2503 5.9s
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal, TextIO

from tqdm.auto import tqdm

__all__ = ["ProgressMode", "ProgressReporter", "resolve_mode"]

ProgressMode = Literal["auto", "bar", "log", "off"]

# Metrics of an epoch-end row shown on the epoch's line, in this order.
_EPOCH_KEYS = ("val_acc", "val_loss")


def resolve_mode(mode: str, stream: TextIO | None = None) -> Literal["bar", "log", "off"]:
    """Turns ``auto`` into ``bar`` (``stream`` is a terminal) or ``log`` (it is not).

    Args:
        mode: ``auto``, ``bar``, ``log`` or ``off``.
        stream: Where progress goes (default: ``sys.stderr``).

    Returns:
        ``bar``, ``log`` or ``off``.
    """
    if mode == "auto":
        stream = sys.stderr if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        try:
            tty = bool(isatty()) if callable(isatty) else False
        except (OSError, ValueError):  # a closed or detached stream
            tty = False
        return "bar" if tty else "log"
    if mode not in ("bar", "log", "off"):
        raise ValueError(f"unknown progress mode {mode!r}; expected auto, bar, log or off")
    return mode  # type: ignore[return-value]


class ProgressReporter:
    """Reports one stage's epochs and steps as bars or as plain lines.

    Args:
        mode: ``auto``, ``bar``, ``log`` or ``off`` (see the module docstring).
        stage: The stage's name (``search``, ``retrain``, ``finetune``).
        epochs: Epochs of the stage (None: a time budget decides).
        steps_per_epoch: Steps of one epoch.
        initial_epoch: The epoch the stage starts at (after a resume, the checkpoint's).
        every: Steps between plain lines in ``log`` mode.
        stream: Where progress goes (default: ``sys.stderr``).
    """

    def __init__(self, mode: str, stage: str, epochs: int | None, steps_per_epoch: int, initial_epoch: int = 0,
                 every: int = 50, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.mode = resolve_mode(mode, stream)
        self.stage = stage
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.every = max(int(every), 1)
        self._epoch = initial_epoch
        self._step = 0
        self._last: dict[str, float] = {}
        self._start = time.perf_counter()
        self._epochs_bar: Any = None
        self._bar: Any = None
        if self.mode == "bar":
            self._epochs_bar = tqdm(total=epochs, initial=initial_epoch, desc=stage, unit="epoch", leave=False,
                                    file=stream)

    # ------------------------------------------------------------------ epochs
    def start_epoch(self, epoch: int, step_in_epoch: int = 0) -> None:
        """Called before the first step of an epoch (``step_in_epoch`` > 0 after a resume)."""
        self._epoch, self._step = epoch, step_in_epoch
        if self.mode == "bar":
            self._bar = tqdm(total=self.steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch}", unit="step",
                             leave=False, file=self.stream)

    def step(self, metrics: Mapping[str, Any] | None) -> None:
        """Called after each step with its metrics (``None`` for a skipped, non-finite step)."""
        self._step += 1
        if metrics is not None:
            self._last = {k: float(metrics[k]) for k in ("loss", "lr") if _is_number(metrics.get(k))}
        if self.mode == "bar" and self._bar is not None:
            self._bar.update(1)
            if metrics is not None and "loss" in self._last:
                self._bar.set_postfix(loss=f"{self._last['loss']:.3f}", lr=f"{self._last.get('lr', 0.0):.3g}")
        elif self.mode == "log" and self._step % self.every == 0 and self._step < self.steps_per_epoch:
            share = 100 * self._step / max(self.steps_per_epoch, 1)
            self._line(f"step {self._step}/{self.steps_per_epoch} ({share:.0f}%){self._format(self._last)}")

    def end_steps(self) -> None:
        """Called after the last step of an epoch (or a stop within it): closes the step bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def end_epoch(self, row: Mapping[str, Any] | None = None) -> None:
        """Called once the epoch is over, with its epoch-end row (validation metrics) if any."""
        self.end_steps()
        if self.mode == "bar" and self._epochs_bar is not None:
            self._epochs_bar.update(1)
        elif self.mode == "log":
            shown = {k: row[k] for k in _EPOCH_KEYS if row is not None and _is_number(row.get(k))}
            self._line(f"done {self._step} steps{self._format(shown or self._last)}")

    # ------------------------------------------------------------------ the end
    def close(self) -> None:
        """Closes the bars (safe to call more than once)."""
        self.end_steps()
        if self._epochs_bar is not None:
            self._epochs_bar.close()
            self._epochs_bar = None

    def write(self, message: str) -> None:
        """Writes ``message`` as one line (under the bars in ``bar`` mode; nothing when ``off``)."""
        if self.mode == "bar":
            tqdm.write(message, file=self.stream)
        elif self.mode == "log":
            self._write(message)

    # ------------------------------------------------------------------ helpers
    def _line(self, text: str) -> None:
        elapsed = time.perf_counter() - self._start
        of = "" if self.epochs is None else f"/{self.epochs}"
        self._write(f"{self.stage}: epoch {self._epoch + 1}{of} {text} {elapsed:.1f}s")

    def _write(self, text: str) -> None:
        stream = sys.stderr if self.stream is None else self.stream
        stream.write(text + "\n")
        stream.flush()

    @staticmethod
    def _format(values: Mapping[str, Any]) -> str:
        parts = []
        for key, value in values.items():
            parts.append(f" {key} {value:.4f}" if key != "lr" else f" {key} {value:.4g}")
        return "".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
