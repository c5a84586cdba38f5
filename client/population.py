"""The device's side of the population statistics: its own counts, clipped, and the statistics it keeps.

Federated analytics (:mod:`vane.server.analytics`) asks every device, in a train message whose config
holds :data:`~vane.shared.protocol.POPULATION_ROUND_KEY`, for its category popularity and transition
counts over the model's taxonomy (:func:`vane.shared.population_artifact.count_vector`, the weighting of
:func:`vane.shared.population.population_counts`), computed from the store's events in time order
(:func:`vane.client.tracker_state.time_ordered`).

The clip rule (bounds one device's contribution, the sensitivity of the sum)
    1. every entry is capped at ``population-entry-cap`` (``min(count, cap)``);
    2. then, when ``population-clip-norm`` is positive, the whole vector is scaled down to that L2 norm
       (the server sends the norm less SecAgg+'s rounding slack, so the quantised vector stays within
       the DP clip).

The reply puts the vector where a training reply puts its delta (``arrays/delta``), less
``population-center`` (half the cap under SecAgg+, so the counts use the symmetric quantisation range),
with ``num-examples`` 1: under SecAgg+ every device weighs the same and the unmasked aggregate is the
mean of the vectors, which the server turns back into their sum. Nothing else leaves the device.

A train message may also carry the published statistics (:data:`~vane.shared.protocol.POPULATION_ARTIFACT_KEY`);
:func:`keep_population` checks them against the device's taxonomy and keeps them sealed in the store
(:meth:`vane.client.persistence.TrackerSlots.save_population`). A device that trains on them uses
``stats.without(own)`` (its own counts subtracted: the features it trains on never hold its own
training targets).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from vane.client.blocks import trainable_events
from vane.client.persistence import TrackerSlots
from vane.client.tracker import InterestTracker
from vane.client.tracker_state import time_ordered
from vane.shared import protocol as p
from vane.shared.artifact import check_same_taxonomy
from vane.shared.errors import ConfigError, MessageError, TaxonomyError
from vane.shared.population import PopulationStats, population_stats
from vane.shared.population_artifact import PopulationArtifact, count_vector
from vane.shared.taxonomy import Taxonomy

__all__ = [
    "PopulationRequest",
    "clip_counts",
    "device_counts",
    "keep_population",
    "kept_population",
    "own_stats",
    "population_on_device",
    "population_requested",
    "read_population",
]


def population_requested(msg: Message) -> bool:
    """Whether ``msg`` is a population-statistics message (its config holds ``population-round``)."""
    if not msg.has_content():
        return False
    config = msg.content.config_records.get(p.CONFIG_RECORD)
    return config is not None and p.POPULATION_ROUND_KEY in config


def _number(config: Mapping[str, Any], key: str, default: float, positive: bool = False) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0 \
            or (positive and value == 0):
        raise MessageError(f"message config {key} is {value!r}; expected a finite number "
                           f"{'> 0' if positive else '>= 0'}")
    return float(value)


@dataclass(frozen=True)
class PopulationRequest:
    """What a population-statistics message asks: the taxonomy and the clip rule."""

    taxonomy: Taxonomy
    entry_cap: float
    clip_norm: float
    center: float

    @classmethod
    def read(cls, msg: Message) -> PopulationRequest:
        """The request in ``msg``'s config (MessageError naming a bad key or value)."""
        config = msg.content.config_records.get(p.CONFIG_RECORD)
        if config is None:
            raise MessageError(f"the population message has no {p.CONFIG_RECORD!r} record")
        raw = config.get(p.TAXONOMY_KEY)
        if not isinstance(raw, str):
            raise MessageError(f"the population message config has no {p.TAXONOMY_KEY!r} (JSON string)")
        try:
            taxonomy = Taxonomy.from_dict(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise MessageError(f"the population message's taxonomy is malformed: {exc}") from None
        cap = _number(config, p.POPULATION_ENTRY_CAP_KEY, 0.0, positive=True)
        center = _number(config, p.POPULATION_CENTER_KEY, 0.0)
        if center > cap:
            raise MessageError(f"message config {p.POPULATION_CENTER_KEY} is {center}; expected at most the "
                               f"entry cap {cap}")
        return cls(taxonomy, cap, _number(config, p.POPULATION_CLIP_NORM_KEY, 0.0), center)


def clip_counts(vector: np.ndarray, entry_cap: float, clip_norm: float = 0.0) -> np.ndarray:
    """The clip rule: each entry capped at ``entry_cap``, then the vector scaled to L2 ``clip_norm`` (0: none)."""
    out = np.minimum(np.asarray(vector, dtype=np.float64), entry_cap)
    if clip_norm > 0:
        norm = float(np.linalg.norm(out))
        if norm > clip_norm:
            out = out * (clip_norm / norm)
    return out


def device_counts(tracker: InterestTracker, taxonomy: Taxonomy) -> np.ndarray:
    """The tracker's own count vector over ``taxonomy`` (refused when it is not the store's taxonomy).

    Events whose topics are all blocked are left out, as on-device training leaves them out.
    """
    own = tracker.taxonomy
    if own is None:
        raise ConfigError("this device has no taxonomy yet (no model installed): it cannot count over one")
    check_same_taxonomy(own, taxonomy, "population statistics")
    events = trainable_events([event for _, event in time_ordered(tracker.store)], tracker.blocked())
    return count_vector(events, taxonomy)


def own_stats(tracker: InterestTracker) -> PopulationStats:
    """This device's own counts as statistics, to subtract from the population's (``stats.without(own)``):
    those of the events it counts (all but those whose topics are all blocked)."""
    return population_stats([trainable_events([event for _, event in time_ordered(tracker.store)], tracker.blocked())])


def population_on_device(msg: Message, open_tracker: Callable[[], InterestTracker]) -> Message:
    """Reply to a population message with the clipped, centred count vector (``arrays/delta``) and weight 1."""
    request = PopulationRequest.read(msg)
    tracker = open_tracker()
    try:
        counts = device_counts(tracker, request.taxonomy)
    finally:
        tracker.close()
    if not counts.any():
        raise ConfigError("this device has no events to count")
    vector = clip_counts(counts, request.entry_cap, request.clip_norm) - request.center
    content = RecordDict({
        p.ARRAYS_RECORD: ArrayRecord({p.DELTA_KEY: Array(vector.astype(np.float32))}),
        p.METRICS_RECORD: MetricRecord({p.NUM_EXAMPLES_KEY: 1.0}),
    })
    return Message(content=content, reply_to=msg)


def read_population(config: ConfigRecord | Mapping[str, Any]) -> tuple[bytes, PopulationArtifact] | None:
    """The statistics artifact a message config carries, parsed and checked (None when it carries none).

    Raises MessageError (not bytes) or PopulationArtifactError (damaged) before the device changes anything.
    """
    blob = config.get(p.POPULATION_ARTIFACT_KEY)
    if blob is None:
        return None
    if not isinstance(blob, bytes):
        raise MessageError(f"message config {p.POPULATION_ARTIFACT_KEY} is {type(blob).__name__}; expected bytes")
    return blob, PopulationArtifact.from_bytes(blob, None, "the population statistics in the message")


def keep_population(tracker: InterestTracker, population: tuple[bytes, PopulationArtifact] | None) -> bool:
    """Keep :func:`read_population`'s artifact sealed in the store, after checking the device's taxonomy.

    Returns whether a new artifact was stored; a TaxonomyError (another taxonomy) stores nothing.
    """
    if population is None:
        return False
    blob, artifact = population
    taxonomy = tracker.taxonomy
    if taxonomy is None:
        raise TaxonomyError("population statistics arrived before any taxonomy: install the model first")
    artifact.check_taxonomy(taxonomy, "the population statistics in the message")
    return TrackerSlots(tracker.store).save_population(blob)


def kept_population(tracker: InterestTracker) -> PopulationArtifact | None:
    """The statistics artifact this device keeps (checked against its taxonomy), or None."""
    blob = TrackerSlots(tracker.store).population()
    if blob is None or tracker.taxonomy is None:
        return None
    return PopulationArtifact.from_bytes(blob, tracker.taxonomy, "the kept population statistics")
