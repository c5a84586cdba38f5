"""What the ``vane`` commands that run simulations show: quiet by default, a bar with ETA when long.

:func:`configure_output` runs first in each such command, before TensorFlow, absl, Flower or
Ray is imported: by default their logs, banners and deprecation warnings are off and a command
prints about one line per round or phase; ``verbose`` leaves them all on.

:class:`Bar` is a rich progress bar with ETA on stderr; it prints its lines above the bar (and
only those lines when stderr is not a terminal).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from vane.shared.protocol import TRAIN_LOSS_KEY

__all__ = ["FRAMEWORK_LOGGERS", "QUIET_ENV", "Bar", "RoundProgress", "configure_output", "is_verbose", "round_line"]

#: Environment read by TensorFlow (C++), absl/glog, gRPC and Ray when they start; set before they import.
QUIET_ENV: dict[str, str] = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "GLOG_minloglevel": "3",
    "ABSL_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
    "RAY_DEDUP_LOGS": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning,ignore::UserWarning",
}
#: Python loggers of the frameworks (and Vane's own per-message logs) kept at ERROR unless verbose.
FRAMEWORK_LOGGERS = ("flwr", "ray", "absl", "tensorflow", "h5py", "matplotlib", "vane.client", "vane.server",
                     "vane.simulations")
#: Set by :func:`configure_output`; read by children (Ray actors, spawned runs) through the environment.
VERBOSE_ENV = "VANE_VERBOSE"

_verbose = False


def is_verbose() -> bool:
    """Whether :func:`configure_output` (here or in a parent process) asked for the frameworks' logs."""
    return _verbose or os.environ.get(VERBOSE_ENV) == "1"


def configure_output(verbose: bool = False) -> None:
    """Quiet TensorFlow, absl, Flower and Ray (default), or let them all speak (``verbose``).

    Call it before those libraries are imported: the environment variables only reach their C++
    parts (and Ray's workers) at start-up. Flower's logger is kept from propagating, so no line
    is printed twice.
    """
    global _verbose
    _verbose = verbose
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if verbose:
        for name in ("flwr", "vane.client", "vane.server", "vane.simulations"):
            logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger("flwr").propagate = False
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    quiet_loggers()


def quiet_loggers() -> None:
    """Framework loggers at ERROR; Flower's own handler also (flwr sets its level when imported)."""
    for name in FRAMEWORK_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    flwr = logging.getLogger("flwr")
    flwr.propagate = False
    for handler in flwr.handlers:
        handler.setLevel(logging.ERROR)


class Bar:
    """A rich progress bar with elapsed time and ETA on stderr.

    Parameters
    ----------
    description : str
    total : float
        Steps to completion (rounds, users, phases).
    enabled : bool, default True
        False prints the lines of :meth:`line` only.
    """

    def __init__(self, description: str, total: float, enabled: bool = True) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.description = description
        self.total = total
        self.enabled = enabled and self.console.is_terminal
        self._progress: Any = None
        self._task: Any = None
        self._owner = False

    #: The progress display of the outermost open bar; a nested bar adds its task to it.
    _shared: Any = None

    def __enter__(self) -> Bar:
        if self.enabled and Bar._shared is not None:
            self._progress = Bar._shared
            self.console = self._progress.console
            self._task = self._progress.add_task(self.description, total=self.total, status="")
            return self
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                console=self.console, transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, status="")
            self._owner = True
            Bar._shared = self._progress
        return self

    def update(self, completed: float | None = None, status: str | None = None, advance: float = 0.0) -> None:
        """Move the bar to ``completed`` (or by ``advance``) and show ``status`` after it."""
        if self._progress is None:
            return
        fields: dict[str, Any] = {} if status is None else {"status": status}
        if completed is not None:
            self._progress.update(self._task, completed=completed, **fields)
        else:
            self._progress.update(self._task, advance=advance, **fields)

    def line(self, text: str) -> None:
        """Print ``text`` as one line (above the bar on a terminal), literally (no Rich markup)."""
        from rich.text import Text

        self.console.print(Text(text), soft_wrap=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is None:
            return
        if self._owner:
            Bar._shared = None
            self._progress.stop()
        else:
            self._progress.remove_task(self._task)


class RoundProgress:
    """One line per round (and a bar with ETA on a terminal), fed by the ServerApp's per-round callback."""

    def __init__(self, rounds: int, enabled: bool,
                 on_round: Callable[[int, int, dict[str, Any]], None] | None = None) -> None:
        self.rounds = rounds
        self.enabled = enabled
        self.bar = Bar("federated rounds", rounds, enabled=enabled)
        self.forward = on_round
        self.started = time.perf_counter()

    def __enter__(self) -> RoundProgress:
        self.bar.__enter__()
        self.bar.update(0, status="starting Ray")
        return self

    def on_round(self, round_number: int, total: int, entry: dict[str, Any]) -> None:
        if self.forward is not None:
            self.forward(round_number, total, entry)
        if self.enabled:
            self.bar.update(round_number, status="")
            self.bar.line(round_line(round_number, total, entry, time.perf_counter() - self.started))

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)


def round_line(round_number: int, total: int, entry: Mapping[str, Any], elapsed: float) -> str:
    """``round 2/5: 3.1 s, 10 trained, loss 2.412, hr@5 0.388 (41 s)``: what a round did, in one line."""
    ev, train = entry.get("evaluate", {}), entry.get("train", {})
    parts = [f"round {round_number}/{total}: {float(entry.get('seconds') or 0.0):.1f} s"]
    if round_number > 0:
        parts.append(f"{len(entry.get('aggregated-nodes', []))} trained")
        if entry.get("failed"):
            parts.append(f"{len(entry['failed'])} failed")
    else:
        parts.append("untrained model")
    if TRAIN_LOSS_KEY in train:
        parts.append(f"loss {train[TRAIN_LOSS_KEY]:.3f}")
    if "hr@5" in ev:
        parts.append(f"hr@5 {ev['hr@5']:.3f}")
    return ", ".join(parts) + f" ({elapsed:.0f} s)"


class MethodProgress:
    """A bar over an evaluation's methods: each progress line ``"<method>: …"`` completes one.

    Parameters
    ----------
    methods : sequence of str
        The methods the evaluation runs, in any order.
    """

    def __init__(self, methods: tuple[str, ...] | list[str]) -> None:
        self.pending = set(methods)
        self.bar = Bar("evaluation methods", len(self.pending))

    def __enter__(self) -> MethodProgress:
        self.bar.__enter__()
        return self

    def say(self, text: str) -> None:
        """Print ``text``; advance the bar when it reports a method that had not finished."""
        self.bar.line(text)
        name = text.split(":", 1)[0].strip()
        if name in self.pending:
            self.pending.discard(name)
            self.bar.update(advance=1, status=f"{name} done")

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)
