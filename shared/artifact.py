"""The model artifact: one file a tracker opens with nothing else (``vane server export-model OUT``).

Layout (all integers big-endian)::

    8 bytes   magic  b"VANEMDL\\x00"
    4 bytes   N, the length of the manifest
    N bytes   the manifest, UTF-8 JSON (below)
    ...       the LiteRT ``.tflite`` bytes (``tflite_size`` of them)
    ...       optionally, weights to apply over the ones baked into it
              (:meth:`vane.shared.weights.Weights.to_bytes`, ``weights_size`` of them; 0 when none)

The manifest::

    {"format": "vane.model/1", "version": "r0003-1a2b3c4d", "created": "2026-11-29T17:00:00+00:00",
     "spec": {...ModelSpec fields...}, "spec_hash": "...",
     "taxonomy": {...Taxonomy.to_dict()...}, "taxonomy_version": "...",
     "tflite_size": 123, "tflite_sha256": "...", "weights_size": 0, "weights_sha256": null,
     "encoder_version": "minilm-l6-v2.int8.1a2b3c4d5e"}

``encoder_version`` (only when set) is the text encoder a model that reads text was trained against; a
device refuses the model under another encoder (:func:`check_same_encoder`).

Reading checks everything before anything is used: the magic, the manifest's fields, the sizes, both
SHA-256 digests, the spec's hash and the taxonomy's content hash; any failure raises
:class:`~vane.shared.errors.ModelError` naming the field. The ``.tflite`` itself embeds its spec, which
the client's runtime compares to the manifest's (a mismatch is a
:class:`~vane.shared.errors.SpecMismatchError`).

Also here: the names that tie a model to its weights and vocabulary on both sides:
:func:`model_identity` (the architecture a device must hold to use a round's weights) and
:func:`round_version` (the version label of a round's global weights, the registry's id), and
:func:`check_same_taxonomy`, the one refusal of a model built for another vocabulary, and
:func:`check_same_encoder`, of a model that reads text embedded by another encoder.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vane.shared.errors import ModelError, SpecError, TaxonomyError, WeightsError
from vane.shared.events import OTHER
from vane.shared.jsonfile import write_bytes_atomic
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

MAGIC = b"VANEMDL\x00"
ARTIFACT_FORMAT = "vane.model/1"
#: The conventional file suffix (any name works: the magic decides).
SUFFIX = ".vane"
_HEADER = struct.Struct(">I")
_MAX_MANIFEST = 1 << 20


def model_identity(spec: ModelSpec, taxonomy: Taxonomy) -> str:
    """The architecture (spec) and vocabulary (taxonomy) a device needs to use a run's weights."""
    return f"{spec.hash}.{taxonomy.version[:8]}"


def round_version(round_number: int, spec_hash: str) -> str:
    """The version label of round ``round_number``'s global weights: the model registry's id."""
    return f"r{int(round_number):04d}-{spec_hash[:8]}"


def check_same_taxonomy(device: Taxonomy, model: Taxonomy, where: str) -> None:
    """Refuse a model whose taxonomy is not the device's (never map its categories to ``other``).

    Raises
    ------
    TaxonomyError
        Naming both content hashes and sizes, and ``where`` the mismatch was found.
    """
    if device != model:
        raise TaxonomyError(
            f"{where}: the model's taxonomy {model.version} ({len(model)} categories) is not this device's "
            f"taxonomy {device.version} ({len(device)} categories); its categories would all become 'other'. "
            "Install a model trained for this device's taxonomy (or start a new store for the new one)"
        )


def other_share(categories: Iterable[Iterable[str]], taxonomy: Taxonomy) -> tuple[int, int]:
    """``(unknown, categorised)``: of the events with a category other than ``other``, how many have
    none in ``taxonomy`` (they would all become ``other`` under it). Events the device itself could
    not categorise (only ``other``, e.g. unmatched URLs) are not counted."""
    unknown = categorised = 0
    for cats in categories:
        named = [c for c in cats if c != OTHER]
        if named:
            categorised += 1
            unknown += all(taxonomy.index(c) == 0 for c in named)
    return unknown, categorised


def coverage_problem(categories: Iterable[Iterable[str]], taxonomy: Taxonomy, min_events: int = 10,
                     max_unknown: float = 0.9) -> str | None:
    """Why ``taxonomy`` does not fit a device's events (None when it does): more than ``max_unknown``
    of at least ``min_events`` categorised events (:func:`other_share`) would become ``other``.

    A model for another vocabulary leaves (nearly) all of a device's events unknown. A vocabulary cut to the
    most common categories leaves many unknown on some honest devices: on Taobao's top 256 categories, 153 of
    815 training users have more than half of their events outside it (9 more than 90%), so a 0.5 limit kept
    a fifth of the population out of every federated round; the limit is 0.9.
    """
    unknown, categorised = other_share(categories, taxonomy)
    if categorised < min_events or unknown <= max_unknown * categorised:
        return None
    return (f"{unknown} of this device's {categorised} categorised events have no category in the model's "
            f"taxonomy {taxonomy.version} ({len(taxonomy)} categories) and would all become 'other': the model "
            "was trained for another vocabulary (a deployment for browsing uses builtin:topics)")


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelArtifact:
    """A LiteRT model with its spec, taxonomy, version label, date and (optionally) weights over it."""

    blob: bytes
    spec: ModelSpec
    taxonomy: Taxonomy
    version: str
    created: str = field(default_factory=_utc_now)
    weights: Weights | None = None
    #: The text encoder version the weights were trained against (None: not recorded, or no text).
    encoder_version: str | None = None

    def __post_init__(self) -> None:
        if self.spec.num_categories != len(self.taxonomy):
            raise SpecError(f"ModelSpec.num_categories is {self.spec.num_categories} but the taxonomy "
                            f"{self.taxonomy.version} has {len(self.taxonomy)} categories")
        if self.weights is not None and self.weights.spec_hash != self.spec.hash:
            raise SpecError(f"the weights are for spec {self.weights.spec_hash}, the model for {self.spec.hash}")
        if not self.version:
            raise ModelError("a model artifact needs a non-empty version label")

    def manifest(self) -> dict[str, Any]:
        """The JSON manifest written in front of the model."""
        wbytes = self.weights.to_bytes() if self.weights is not None else b""
        return {
            "format": ARTIFACT_FORMAT, "version": self.version, "created": self.created,
            "spec": self.spec.to_dict(), "spec_hash": self.spec.hash,
            "taxonomy": self.taxonomy.to_dict(), "taxonomy_version": self.taxonomy.version,
            "tflite_size": len(self.blob), "tflite_sha256": _sha(self.blob),
            "weights_size": len(wbytes), "weights_sha256": _sha(wbytes) if wbytes else None,
        } | ({"encoder_version": self.encoder_version} if self.encoder_version is not None else {})

    def to_bytes(self) -> bytes:
        """The artifact file's bytes."""
        manifest = json.dumps(self.manifest(), sort_keys=True).encode("utf-8")
        wbytes = self.weights.to_bytes() if self.weights is not None else b""
        return MAGIC + _HEADER.pack(len(manifest)) + manifest + self.blob + wbytes

    def save(self, path: str | Path) -> Path:
        """Write the artifact atomically (a temporary file, then a rename)."""
        return write_bytes_atomic(path, self.to_bytes())

    @staticmethod
    def is_artifact(data: bytes) -> bool:
        """Whether ``data`` starts like an artifact (a plain ``.tflite`` does not)."""
        return data[: len(MAGIC)] == MAGIC

    @classmethod
    def load(cls, path: str | Path) -> ModelArtifact:
        """Read and check the artifact file ``path``."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelError(f"model file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
        return cls.from_bytes(data, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "model artifact") -> ModelArtifact:
        """Parse and check an artifact.

        Raises
        ------
        ModelError
            When the magic, the manifest, a size or a digest is wrong (the message names which).
        """
        if not cls.is_artifact(data):
            raise ModelError(f"{source} is not a Vane model artifact (no {MAGIC!r} header)")
        start = len(MAGIC) + _HEADER.size
        if len(data) < start:
            raise ModelError(f"{source} is truncated: it ends inside the header")
        (size,) = _HEADER.unpack_from(data, len(MAGIC))
        if size > _MAX_MANIFEST or start + size > len(data):
            raise ModelError(f"{source}: manifest length {size} exceeds the file ({len(data)} bytes)")
        try:
            manifest = json.loads(data[start : start + size].decode("utf-8"))
        except ValueError as exc:
            raise ModelError(f"{source}: the manifest is not UTF-8 JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
            raise ModelError(f"{source}: manifest format is not {ARTIFACT_FORMAT!r}")
        return cls._from_manifest(manifest, data[start + size :], source)

    @classmethod
    def _from_manifest(cls, manifest: dict[str, Any], body: bytes, source: str) -> ModelArtifact:
        try:
            tsize, wsize = int(manifest["tflite_size"]), int(manifest["weights_size"])
            version, created = str(manifest["version"]), str(manifest["created"])
            spec = ModelSpec.from_dict(manifest["spec"])
            taxonomy = Taxonomy.from_dict(manifest["taxonomy"])
            encoder = manifest.get("encoder_version")
            if encoder is not None and not isinstance(encoder, str):
                raise TypeError(f"encoder_version is {encoder!r}; expected a version string or null")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, (SpecError, TaxonomyError)):
                raise ModelError(f"{source}: manifest {type(exc).__name__}: {exc}") from None
            raise ModelError(f"{source}: manifest field missing or malformed ({type(exc).__name__}: {exc})") from None
        if len(body) != tsize + wsize:
            raise ModelError(f"{source}: body is {len(body)} bytes; the manifest promises {tsize} + {wsize}")
        blob, wbytes = body[:tsize], body[tsize:]
        if _sha(blob) != manifest.get("tflite_sha256"):
            raise ModelError(f"{source}: the .tflite bytes do not match tflite_sha256 (damaged file)")
        if spec.hash != manifest.get("spec_hash") or taxonomy.version != manifest.get("taxonomy_version"):
            raise ModelError(f"{source}: spec_hash or taxonomy_version does not match the manifest's content")
        weights = None
        if wsize:
            if _sha(wbytes) != manifest.get("weights_sha256"):
                raise ModelError(f"{source}: the weights do not match weights_sha256 (damaged file)")
            try:
                weights = Weights.from_bytes(wbytes)
            except WeightsError as exc:
                raise ModelError(f"{source}: weights: {exc}") from None
        try:
            return cls(blob, spec, taxonomy, version, created, weights, encoder)
        except (SpecError, ModelError) as exc:
            raise ModelError(f"{source}: {exc}") from None


def check_same_encoder(model_version: str, model_encoder: str | None, text_dim: int, device_encoder: str | None,
                       install_hint: str = "vane client install-encoder --store STORE --registry DIR --version",
                       ) -> None:
    """Refuse a model that reads text (``text_dim`` > 0) unless the device embeds with the encoder it was trained
    against (``model_encoder``): other embeddings would give silently wrong answers. A model without text passes.

    Raises
    ------
    ModelError
        Naming the model's and the device's encoder versions and the command that installs the right one.
    """
    if not text_dim:
        return
    if model_encoder is None:
        raise ModelError(f"model {model_version} reads text (text_dim {text_dim}) but records no encoder version, so "
                         "the embeddings it was trained on are unknown; install it from its run's model registry "
                         "(vane client install-model --registry DIR), whose versions record it")
    if device_encoder != model_encoder:
        has = f"has encoder {device_encoder}" if device_encoder else "has no encoder"
        raise ModelError(f"model {model_version} was trained against encoder {model_encoder} but this device {has}; "
                         f"install that encoder first: {install_hint} {model_encoder}")
