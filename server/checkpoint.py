"""Round checkpoints of a federated run, and resuming from the latest one.

Flower has no checkpointing; the ServerApp writes one directory per round::

    OUT/checkpoints/round-0003/
        weights.vw       the global weights (vane.shared.weights format)
        model.tflite     the LiteRT training model of this spec and taxonomy
        spec.json        the ModelSpec
        taxonomy.json    the Taxonomy
        metrics.json     every round's log so far (train, evaluate, rejected, bytes, seconds)
        strategy.npz     server-optimizer state (FedAdam moments), possibly empty
        state.json       round number, model version, run settings
    OUT/checkpoints/LATEST   name of the newest complete checkpoint

A checkpoint directory is written under a temporary name and renamed, so
``LATEST`` never names a half-written one. ``model.tflite`` carries the
initial weights baked in; apply ``weights.vw`` with ``set_weights`` (the
client does this every round anyway).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.errors import ConfigError
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

LATEST = "LATEST"


@dataclass
class Checkpoint:
    """One saved round."""

    round: int
    path: Path
    weights: Weights
    spec: ModelSpec
    taxonomy: Taxonomy
    rounds: list[dict[str, Any]]
    strategy_state: dict[str, np.ndarray]
    state: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / "model.tflite"


class CheckpointStore:
    """Writes and reads the checkpoints under ``out_dir/checkpoints``."""

    def __init__(self, out_dir: str | Path) -> None:
        self.root = Path(out_dir) / "checkpoints"

    def save(
        self,
        round_number: int,
        weights: Weights,
        spec: ModelSpec,
        taxonomy: Taxonomy,
        model_blob: bytes,
        rounds: list[dict[str, Any]],
        strategy_state: dict[str, np.ndarray],
        state: dict[str, Any],
    ) -> Path:
        """Write the checkpoint of ``round_number`` and point ``LATEST`` at it."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"round-{round_number:04d}"
        final = self.root / name
        tmp = self.root / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        weights.save(tmp / "weights.vw")
        self._write_model(tmp / "model.tflite", model_blob)
        spec.save(tmp / "spec.json")
        taxonomy.save(tmp / "taxonomy.json")
        (tmp / "metrics.json").write_text(json.dumps(rounds, indent=1), encoding="utf-8")
        np.savez(tmp / "strategy.npz", **strategy_state)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        (tmp / "state.json").write_text(json.dumps({**state, "round": round_number}, indent=1), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        latest_tmp = self.root / f".{LATEST}.tmp"
        latest_tmp.write_text(name, encoding="utf-8")
        os.replace(latest_tmp, self.root / LATEST)
        return final

    def _write_model(self, path: Path, blob: bytes) -> None:
        # Every round of a run has the same model file: hard-link one copy.
        shared = self.root / "model-base.tflite"
        if not shared.exists() or shared.stat().st_size != len(blob) or shared.read_bytes() != blob:
            shared.write_bytes(blob)
        try:
            os.link(shared, path)
        except OSError:
            shutil.copyfile(shared, path)

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint, or None when there is none."""
        marker = self.root / LATEST
        if not marker.exists():
            return None
        return self.load(self.root / marker.read_text(encoding="utf-8").strip())

    @staticmethod
    def load(path: str | Path) -> Checkpoint:
        path = Path(path)
        try:
            state = json.loads((path / "state.json").read_text(encoding="utf-8"))
            rounds = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"checkpoint {str(path)!r} is incomplete or unreadable: {exc}") from None
        with np.load(path / "strategy.npz") as npz:
            strategy_state = {k: npz[k] for k in npz.files}
        return Checkpoint(
            round=int(state["round"]),
            path=path,
            weights=Weights.load(path / "weights.vw"),
            spec=ModelSpec.load(path / "spec.json"),
            taxonomy=Taxonomy.load(path / "taxonomy.json"),
            rounds=rounds,
            strategy_state=strategy_state,
            state=state,
        )
