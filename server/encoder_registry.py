"""Published text-encoder versions: shipped once per version, never with a round's weights.

``DIR/encoders.json`` (beside the model registry's ``registry.json``) lists the versions, oldest
first; each version's artifact is kept at ``DIR/encoders/VERSION.vane``::

    {"id": "minilm-l6-v2.int8.1a2b3c4d5e", "sha256": "<the artifact file's digest>", "size": 23600000,
     "quantization": "int8", "dims": 384, "max_len": 128, "created_at": "...", "path": ".../encoders/...vane"}

A version is content-derived (:func:`vane.shared.encoder_artifact.encoder_version`), so publishing it
again is a no-op, and a different file under a published version is refused. A device asks for a
version it lacks with :meth:`EncoderRegistry.blob`, which checks the file against the entry's hash.

A federated run whose model reads text (``ModelSpec.text_dim``) names the encoder its devices embed with
(run_config ``encoder-version``, checked by :func:`run_encoder_version`); each model version it publishes
records it (:class:`vane.server.registry.ModelVersion` ``encoder_version``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from vane.shared.encoder_artifact import EncoderArtifact
from vane.shared.errors import ConfigError, ModelError

ENCODERS_FILE = "encoders.json"


@dataclass(frozen=True)
class EncoderVersion:
    """One published encoder."""

    id: str
    sha256: str
    size: int
    quantization: str
    dims: int
    max_len: int
    created_at: str
    path: str


class EncoderRegistry:
    """Append-only list of encoder versions in ``DIR/encoders.json``."""

    def __init__(self, directory: str | Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.directory = Path(directory)
        self.clock = clock

    @property
    def file(self) -> Path:
        return self.directory / ENCODERS_FILE

    def versions(self) -> list[EncoderVersion]:
        if not self.file.exists():
            return []
        try:
            return [EncoderVersion(**item) for item in json.loads(self.file.read_text(encoding="utf-8"))]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"encoder registry {str(self.file)!r} is corrupt: {exc}") from None

    def lookup(self, version: str) -> EncoderVersion | None:
        return next((v for v in self.versions() if v.id == version), None)

    def latest(self) -> EncoderVersion | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def publish(self, artifact: EncoderArtifact) -> tuple[EncoderVersion, bool]:
        """``(entry, new)``: the version's entry, and whether this call added it.

        Raises
        ------
        ModelError
            When the version is already published with other bytes.
        """
        data = artifact.to_bytes()
        digest = hashlib.sha256(data).hexdigest()
        known = self.lookup(artifact.version)
        if known is not None:
            if known.sha256 != digest:
                raise ModelError(f"encoder version {artifact.version} is already published with sha256 "
                                 f"{known.sha256}, not {digest}; a version is never replaced")
            return known, False
        target = self.directory / "encoders" / f"{artifact.version}.vane"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        entry = EncoderVersion(artifact.version, digest, len(data), artifact.quantization, artifact.dims,
                               artifact.max_len, self.clock().isoformat(timespec="seconds"), str(target.resolve()))
        self._write([*self.versions(), entry])
        return entry, True

    def blob(self, version: str) -> bytes:
        """The artifact bytes of a published ``version``, checked against its entry's hash."""
        entry = self.lookup(version)
        if entry is None:
            known = ", ".join(v.id for v in self.versions()) or "none"
            raise ModelError(f"encoder version {version!r} is not published in {str(self.file)!r} (published: {known})")
        try:
            data = Path(entry.path).read_bytes()
        except OSError as exc:
            raise ModelError(f"encoder file {entry.path!r} of version {version} cannot be read: {exc}") from None
        found = hashlib.sha256(data).hexdigest()
        if found != entry.sha256:
            raise ModelError(f"encoder file {entry.path!r} has sha256 {found}; the registry says {entry.sha256}")
        return data

    def _write(self, versions: list[EncoderVersion]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(ENCODERS_FILE + ".tmp")
        tmp.write_text(json.dumps([asdict(v) for v in versions], indent=1), encoding="utf-8")
        os.replace(tmp, self.file)


def run_encoder_version(directory: str | Path, version: str, text_dim: int) -> str | None:
    """The encoder version a run's model versions record: ``version`` checked against ``DIR/encoders.json``.

    A model that reads text (``text_dim`` > 0) needs one (its weights are only valid with that encoder's
    embeddings); a model without text takes none and records None.

    Raises
    ------
    ConfigError
        When a text model has no ``encoder-version``, a model without text has one, or the version is not
        published in the encoder registry beside the model registry (the message names the value and the
        published versions).
    """
    registry = EncoderRegistry(directory)
    published = ", ".join(v.id for v in registry.versions()) or "none"
    if not text_dim:
        if version:
            raise ConfigError(f"run_config encoder-version is {version!r} but the model reads no text (spec "
                              "text_dim 0); expected it empty (only a model with text_dim needs an encoder)")
        return None
    if not version:
        raise ConfigError(f"run_config encoder-version is empty but the model reads text (spec text_dim {text_dim});"
                          f" expected a version published in {str(registry.file)!r} (published: {published}; "
                          f"publish one with vane server export-encoder OUT --registry {str(registry.directory)!r})")
    entry = registry.lookup(version)
    if entry is None:
        raise ConfigError(f"run_config encoder-version is {version!r}; expected a version published in "
                          f"{str(registry.file)!r} (published: {published})")
    if entry.dims != text_dim:
        raise ConfigError(f"run_config encoder-version {version!r} embeds {entry.dims} dims but the model reads "
                          f"text_dim {text_dim}; expected an encoder of the model's width")
    return entry.id
