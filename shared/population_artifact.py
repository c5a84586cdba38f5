"""Population statistics over a taxonomy: the dense count vector devices sum, and the versioned artifact.

The vector layout
    A device's counts over a taxonomy of ``V`` names (index 0 is ``other``) are one float vector of
    ``V + V*V`` entries: ``[0, V)`` popularity by taxonomy index, then ``V + a*V + b`` the transition
    count of ``a`` directly followed by ``b``. The weighting is :func:`vane.shared.population.population_counts`'
    (one popularity count per event that has the name; a transition adds ``1 / (|prev| * |next|)``). A
    category outside the taxonomy counts as ``other`` (once per event). Dense on purpose: a fixed layout
    is what secure aggregation sums, and the largest taxonomy (256 names) gives 65,792 entries, 257 KiB
    as float32, about a tenth of the interest model's weights.

The artifact (:class:`PopulationArtifact`)
    ``MAGIC`` + a 4-byte big-endian manifest length + a JSON manifest (format, version, creation
    date, taxonomy hash and size, number of devices, secure aggregation, the clip rule, the DP
    settings and ε, the stated tolerance of the sum, sizes and SHA-256 of the arrays) + the arrays:
    the non-zero entries' indices (uint32, little-endian) and values (float64). It is published
    beside the model and sent to devices, which keep it sealed in their store; reading it checks
    every size and digest, and :meth:`PopulationArtifact.stats` refuses another taxonomy than the
    device's with a :class:`~vane.shared.errors.TaxonomyError` naming both hashes.

Only numpy and the standard library.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.errors import TaxonomyError, VaneError
from vane.shared.events import Event
from vane.shared.jsonfile import write_bytes_atomic
from vane.shared.population import PopulationStats
from vane.shared.taxonomy import Taxonomy

MAGIC = b"VANEPOP\x00"
POPULATION_FORMAT = "vane.population/1"
#: The conventional file suffix.
SUFFIX = ".vpop"
_HEADER = struct.Struct(">I")
_MAX_MANIFEST = 1 << 20


class PopulationArtifactError(VaneError, ValueError):
    """A population statistics artifact that cannot be read (damaged, truncated, not one)."""


# --- the vector layout ----------------------------------------------------------------
def vector_size(taxonomy: Taxonomy) -> int:
    """Entries of a count vector over ``taxonomy``: ``V + V*V``."""
    v = len(taxonomy)
    return v + v * v


def count_vector(events: Iterable[Event], taxonomy: Taxonomy) -> np.ndarray:
    """One person's popularity and transition counts over ``taxonomy`` (events in time order), float64."""
    v = len(taxonomy)
    out = np.zeros(v + v * v, dtype=np.float64)
    previous: list[int] = []
    pairs: dict[int, float] = {}
    for event in events:
        cats = taxonomy.indices(event.categories)
        for i in cats:
            out[i] += 1.0
        if previous and cats:
            weight = 1.0 / (len(previous) * len(cats))
            for a in previous:
                base = v + a * v
                for b in cats:
                    pairs[base + b] = pairs.get(base + b, 0.0) + weight
        previous = cats
    if pairs:
        index = np.fromiter(pairs.keys(), dtype=np.int64, count=len(pairs))
        out[index] += np.fromiter(pairs.values(), dtype=np.float64, count=len(pairs))
    return out


def _check_size(vector: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    arr = np.asarray(vector, dtype=np.float64)
    if arr.ndim != 1 or arr.size != vector_size(taxonomy):
        raise ValueError(f"a count vector over taxonomy {taxonomy.version} ({len(taxonomy)} names) has "
                         f"{vector_size(taxonomy)} entries; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("the count vector holds a non-finite value")
    return arr


def vector_stats(vector: np.ndarray, taxonomy: Taxonomy) -> PopulationStats:
    """The :class:`PopulationStats` of a (summed) count vector; negative entries (DP noise) count as 0."""
    arr = _check_size(vector, taxonomy)
    v = len(taxonomy)
    names = taxonomy.names
    popularity = {names[i]: float(arr[i]) for i in np.flatnonzero(arr[:v] > 0)}
    table = arr[v:].reshape(v, v)
    transitions: dict[str, dict[str, float]] = {}
    for a in np.flatnonzero(np.any(table > 0, axis=1)):
        row = table[a]
        transitions[names[a]] = {names[b]: float(row[b]) for b in np.flatnonzero(row > 0)}
    return PopulationStats.from_counts(popularity, transitions)


def stats_vector(stats: PopulationStats, taxonomy: Taxonomy) -> np.ndarray:
    """The count vector of ``stats`` over ``taxonomy`` (names outside it are added to ``other``)."""
    v = len(taxonomy)
    out = np.zeros(v + v * v, dtype=np.float64)
    for name, count in stats.popularity.items():
        out[taxonomy.index(name)] += count
    for a, row in stats.transitions.items():
        base = v + taxonomy.index(a) * v
        for b, w in row.items():
            out[base + taxonomy.index(b)] += w
    return out


# --- the artifact -----------------------------------------------------------------------
def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PopulationArtifact:
    """Summed population counts over a taxonomy, with how they were made.

    Parameters
    ----------
    vector : array
        The summed count vector (:func:`vector_size` entries over the taxonomy).
    taxonomy_version : str
        ``Taxonomy.version`` of the taxonomy the vector is laid out over.
    taxonomy_size : int
    devices : int
        Devices whose counts are in the sum.
    version : str
        The artifact's version label (e.g. ``pop-r0000-1a2b3c4d``).
    secure_aggregation : bool
        Whether the sum was formed under SecAgg+ (no device's vector seen in the clear).
    clip : dict
        The per-device clip rule (``entry-cap``, ``l2-norm``; 0 = none).
    dp : dict
        ``noise-multiplier``, ``noise-std``, ``epsilon``, ``delta`` (empty without DP).
    tolerance : float
        Largest deviation per entry of :attr:`vector` from the plain sum of the clipped device
        counts, before DP noise (SecAgg+'s quantisation; 0 when summed in the clear up to float32).
    created : str
    """

    vector: np.ndarray
    taxonomy_version: str
    taxonomy_size: int
    devices: int
    version: str
    secure_aggregation: bool = False
    clip: Mapping[str, float] = field(default_factory=dict)
    dp: Mapping[str, float] = field(default_factory=dict)
    tolerance: float = 0.0
    created: str = field(default_factory=_utc_now)

    def __post_init__(self) -> None:
        v = self.taxonomy_size
        arr = np.asarray(self.vector, dtype=np.float64)
        if arr.ndim != 1 or arr.size != v + v * v:
            raise PopulationArtifactError(f"population vector has shape {arr.shape}; a taxonomy of {v} names "
                                          f"needs {v + v * v} entries")
        if not np.all(np.isfinite(arr)):
            raise PopulationArtifactError("population vector holds a non-finite value")
        if self.devices < 0 or not self.version:
            raise PopulationArtifactError(f"devices is {self.devices} and version {self.version!r}; expected "
                                          ">= 0 devices and a non-empty version")
        object.__setattr__(self, "vector", arr)

    def check_taxonomy(self, taxonomy: Taxonomy, where: str = "population statistics") -> None:
        """Refuse a taxonomy other than the one the counts are laid out over (TaxonomyError naming both)."""
        if taxonomy.version != self.taxonomy_version or len(taxonomy) != self.taxonomy_size:
            raise TaxonomyError(
                f"{where}: the statistics are over taxonomy {self.taxonomy_version} ({self.taxonomy_size} names), "
                f"not this taxonomy {taxonomy.version} ({len(taxonomy)} names); their counts would land on other "
                "categories. Use the statistics published with this taxonomy's model")

    def stats(self, taxonomy: Taxonomy) -> PopulationStats:
        """The :class:`PopulationStats` of the counts, after checking ``taxonomy`` is theirs."""
        self.check_taxonomy(taxonomy)
        return vector_stats(self.vector, taxonomy)

    def manifest(self, indices: bytes = b"", values: bytes = b"") -> dict[str, Any]:
        """The JSON manifest written in front of the arrays."""
        return {
            "format": POPULATION_FORMAT, "version": self.version, "created": self.created,
            "taxonomy_version": self.taxonomy_version, "taxonomy_size": self.taxonomy_size,
            "devices": self.devices, "secure_aggregation": self.secure_aggregation,
            "clip": dict(self.clip), "dp": dict(self.dp), "tolerance": self.tolerance,
            "entries": len(indices) // 4, "indices_sha256": _sha(indices), "values_sha256": _sha(values),
        }

    def to_bytes(self) -> bytes:
        """The artifact file's bytes."""
        nonzero = np.flatnonzero(self.vector)
        indices = nonzero.astype("<u4").tobytes()
        values = self.vector[nonzero].astype("<f8").tobytes()
        manifest = json.dumps(self.manifest(indices, values), sort_keys=True).encode("utf-8")
        return MAGIC + _HEADER.pack(len(manifest)) + manifest + indices + values

    def save(self, path: str | Path) -> Path:
        """Write the artifact atomically (a temporary file, then a rename)."""
        return write_bytes_atomic(path, self.to_bytes())

    @staticmethod
    def is_artifact(data: bytes) -> bool:
        """Whether ``data`` starts like a population artifact."""
        return data[: len(MAGIC)] == MAGIC

    @classmethod
    def load(cls, path: str | Path, taxonomy: Taxonomy | None = None) -> PopulationArtifact:
        """Read and check the artifact file ``path`` (and its taxonomy, when given)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PopulationArtifactError(f"population file {str(path)!r} cannot be read: "
                                          f"{exc.strerror or exc}") from None
        return cls.from_bytes(data, taxonomy, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, taxonomy: Taxonomy | None = None,
                   source: str = "population artifact") -> PopulationArtifact:
        """Parse and check an artifact; with ``taxonomy``, refuse statistics over another one.

        Raises
        ------
        PopulationArtifactError
            When the magic, the manifest, a size or a digest is wrong (the message names which).
        TaxonomyError
            When ``taxonomy`` is given and is not the artifact's.
        """
        if not cls.is_artifact(data):
            raise PopulationArtifactError(f"{source} is not a Vane population artifact (no {MAGIC!r} header)")
        start = len(MAGIC) + _HEADER.size
        if len(data) < start:
            raise PopulationArtifactError(f"{source} is truncated: it ends inside the header")
        (size,) = _HEADER.unpack_from(data, len(MAGIC))
        if size > _MAX_MANIFEST or start + size > len(data):
            raise PopulationArtifactError(f"{source}: manifest length {size} exceeds the file ({len(data)} bytes)")
        try:
            manifest = json.loads(data[start : start + size].decode("utf-8"))
        except ValueError as exc:
            raise PopulationArtifactError(f"{source}: the manifest is not UTF-8 JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != POPULATION_FORMAT:
            raise PopulationArtifactError(f"{source}: manifest format is not {POPULATION_FORMAT!r}")
        artifact = cls._from_manifest(manifest, data[start + size :], source)
        if taxonomy is not None:
            artifact.check_taxonomy(taxonomy, source)
        return artifact

    @classmethod
    def _from_manifest(cls, manifest: dict[str, Any], body: bytes, source: str) -> PopulationArtifact:
        try:
            entries, v = int(manifest["entries"]), int(manifest["taxonomy_size"])
            fields_ = {k: manifest[k] for k in ("version", "created", "taxonomy_version", "devices",
                                                "secure_aggregation", "clip", "dp", "tolerance")}
        except (KeyError, TypeError, ValueError) as exc:
            raise PopulationArtifactError(f"{source}: manifest field missing or malformed "
                                          f"({type(exc).__name__}: {exc})") from None
        if entries < 0 or v < 1 or len(body) != entries * 12:
            raise PopulationArtifactError(f"{source}: body is {len(body)} bytes; the manifest promises "
                                          f"{entries} entries of 12 bytes")
        indices, values = body[: entries * 4], body[entries * 4 :]
        if _sha(indices) != manifest.get("indices_sha256") or _sha(values) != manifest.get("values_sha256"):
            raise PopulationArtifactError(f"{source}: the arrays do not match their SHA-256 in the manifest "
                                          "(damaged file)")
        index = np.frombuffer(indices, dtype="<u4").astype(np.int64)
        if index.size and int(index.max()) >= v + v * v:
            raise PopulationArtifactError(f"{source}: an index exceeds the {v + v * v} entries of the layout")
        vector = np.zeros(v + v * v, dtype=np.float64)
        vector[index] = np.frombuffer(values, dtype="<f8")
        try:
            return cls(vector, str(fields_["taxonomy_version"]), v, int(fields_["devices"]), str(fields_["version"]),
                       bool(fields_["secure_aggregation"]), dict(fields_["clip"]), dict(fields_["dp"]),
                       float(fields_["tolerance"]), str(fields_["created"]))
        except (TypeError, ValueError) as exc:
            raise PopulationArtifactError(f"{source}: {exc}") from None


def population_version(round_number: int, taxonomy: Taxonomy) -> str:
    """The version label of statistics summed before round ``round_number`` (``pop-r0000-<taxonomy8>``)."""
    return f"pop-r{round_number:04d}-{taxonomy.version[:8]}"


def sum_vectors(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The plain (float64) sum of device vectors: the reference the federated sum must equal."""
    return np.sum(np.asarray(vectors, dtype=np.float64), axis=0)
