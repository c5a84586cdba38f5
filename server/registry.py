"""The model registry: every published model version, on disk.

``DIR/registry.json`` holds a list of versions, oldest first. A version's id is
:func:`vane.shared.artifact.round_version` (the label a device gives the round's global weights
when it installs them). A version names its checkpoint directory, which holds the weights, the
LiteRT file, the spec and the taxonomy (``vane client install-model --registry DIR`` reads them)::

    {"id": "r0003-1a2b3c4d", "round": 3, "spec_hash": "...", "taxonomy_version": "...",
     "metrics": {...}, "created_at": "2025-01-01T00:00:00+00:00", "path": ".../round-0003",
     "encoder_version": "minilm-l6-v2.int8.1a2b3c4d5e"}

``encoder_version`` is the text encoder (:mod:`vane.server.encoder_registry`, ``DIR/encoders.json``) the
weights were trained against: a model whose spec reads text (``text_dim``) is only valid with that encoder's
embeddings, so a device refuses it under another one. None for a model without text (and in a
``registry.json`` written before the field existed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vane.shared.artifact import round_version
from vane.shared.errors import ConfigError

REGISTRY_FILE = "registry.json"


@dataclass(frozen=True)
class ModelVersion:
    """One published model."""

    id: str
    round: int
    spec_hash: str
    taxonomy_version: str
    metrics: dict[str, float]
    created_at: str
    path: str
    #: The on-device blend picked by federated evaluation for this version (None: the client's defaults).
    mix: dict[str, float] | None = None
    #: The text encoder's version the weights were trained against (None: the model reads no text).
    encoder_version: str | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ModelRegistry:
    """Append-only list of model versions in ``DIR/registry.json``.

    Parameters
    ----------
    directory : path
        Where ``registry.json`` lives; created on the first publish.
    clock : callable, default UTC now
        Injectable time source for ``created_at``.
    """

    def __init__(self, directory: str | Path, clock: Callable[[], datetime] = _utc_now) -> None:
        self.directory = Path(directory)
        self.clock = clock

    @property
    def file(self) -> Path:
        return self.directory / REGISTRY_FILE

    def versions(self) -> list[ModelVersion]:
        if not self.file.exists():
            return []
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            return [ModelVersion(**item) for item in data]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"model registry {str(self.file)!r} is corrupt: {exc}") from None

    def publish(
        self, round_number: int, spec_hash: str, taxonomy_version: str, metrics: dict[str, float], path: str | Path,
        mix: dict[str, float] | None = None, encoder_version: str | None = None,
    ) -> ModelVersion:
        """Add a version (replacing one of the same id, as a resumed run re-publishes its round)."""
        version = ModelVersion(
            id=round_version(round_number, spec_hash),
            round=round_number,
            spec_hash=spec_hash,
            taxonomy_version=taxonomy_version,
            metrics={k: float(v) for k, v in metrics.items()},
            created_at=self.clock().isoformat(timespec="seconds"),
            path=str(Path(path).resolve()),
            mix=dict(mix) if mix is not None else None,
            encoder_version=encoder_version or None,
        )
        versions = [v for v in self.versions() if v.id != version.id] + [version]
        self._write(versions)
        return version

    def latest(self) -> ModelVersion | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def _write(self, versions: list[ModelVersion]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(REGISTRY_FILE + ".tmp")
        tmp.write_text(json.dumps([asdict(v) for v in versions], indent=1), encoding="utf-8")
        os.replace(tmp, self.file)


def versions_as_json(versions: list[ModelVersion]) -> list[dict[str, Any]]:
    return [asdict(v) for v in versions]
