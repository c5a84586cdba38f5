"""Turning events into the integer arrays the model reads, and into training targets.

Per event the model reads five inputs:

- ``cats``: up to ``max_categories_per_event`` taxonomy indices **plus one**
  (0 is padding, 1 is ``other``);
- ``item``: the hashed item id;
- ``tokens``: up to ``tokens_per_title`` hashed title tokens;
- ``gap``: the log-scale time-gap bucket since the previous event;
- ``kind``: the index of the event kind in :data:`KINDS` plus one;
- ``text`` (only for a spec with ``text_dim``): the event's text embedding, float32, zeros for an
  event without one.

The training targets at position *t* describe what follows event *t*: the
next event's categories as a distribution (``interest``) and which categories
occur in the next ``intensity_horizon`` events (``intensity``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from vane.shared.events import KINDS, Event
from vane.shared.hashing import item_bucket, token_ids
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.timegap import gap_bucket

_KIND_INDEX = {kind: i + 1 for i, kind in enumerate(KINDS)}


@dataclass
class Features:
    """Model inputs for N events in time order; every array has N rows (or a leading batch axis)."""

    #: The model's integer input names, in signature order, present in every Features. The one place
    #: they are written down.
    FIELDS: ClassVar[tuple[str, ...]] = ("cats", "item", "tokens", "gap", "kind")
    #: The optional float input (a spec with ``text_dim``): present when not None, after :attr:`FIELDS`.
    TEXT: ClassVar[str] = "text"

    cats: np.ndarray  # (N, K) int32
    item: np.ndarray  # (N,) int32
    tokens: np.ndarray  # (N, L) int32
    gap: np.ndarray  # (N,) int32
    kind: np.ndarray  # (N,) int32
    text: np.ndarray | None = None  # (N, D) float32, or None

    def __len__(self) -> int:
        return int(self.item.shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        """The input names this Features holds: :attr:`FIELDS`, then :attr:`TEXT` when it has text."""
        return self.FIELDS if self.text is None else (*self.FIELDS, self.TEXT)

    def arrays(self) -> list[np.ndarray]:
        """The arrays in :attr:`names` order."""
        return [getattr(self, name) for name in self.names]

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays by input name."""
        return {name: getattr(self, name) for name in self.names}

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> Features:
        """A new Features with ``fn`` applied to every array (slicing, padding, batching)."""
        cats, item, tokens, gap, kind = (fn(getattr(self, name)) for name in self.FIELDS)
        return Features(cats, item, tokens, gap, kind, None if self.text is None else fn(self.text))

    def select(self, index: Any) -> Features:
        """Index every array's leading axis: a row, a slice, or an index array."""
        return self.map(lambda a: a[index])

    def rows(self, start: int, stop: int) -> Features:
        return self.select(slice(start, stop))

    @classmethod
    def concat(cls, parts: Sequence[Features]) -> Features:
        """One Features of ``parts`` in order (with text only when every part has it)."""
        texts = [p.text for p in parts if p.text is not None]
        cats, item, tokens, gap, kind = (np.concatenate([getattr(p, name) for p in parts]) for name in cls.FIELDS)
        return cls(cats, item, tokens, gap, kind, np.concatenate(texts) if texts and len(texts) == len(parts) else None)


class Featurizer:
    """Featurises events for one ModelSpec and Taxonomy."""

    def __init__(self, spec: ModelSpec, taxonomy: Taxonomy) -> None:
        if len(taxonomy) != spec.num_categories:
            from vane.shared.errors import SpecMismatchError

            raise SpecMismatchError(
                f"taxonomy has {len(taxonomy)} categories but the model spec has num_categories="
                f"{spec.num_categories}; build the spec from this taxonomy"
            )
        self.spec = spec
        self.taxonomy = taxonomy

    def category_indices(self, event: Event) -> list[int]:
        """Distinct taxonomy indices of the event's categories (``other`` = 0)."""
        return self.taxonomy.indices(event.categories)

    def encode(self, events: Sequence[Event], previous_time: float | None = None,
               text: np.ndarray | None = None) -> Features:
        """Features of ``events``; ``previous_time`` is the Unix time of the event before the first.

        ``text`` is the events' text embeddings, ``(N, spec.text_dim)`` (a zero row for an event without
        one), used only when the spec has ``text_dim`` (zeros for every event when omitted).

        Raises
        ------
        SpecMismatchError
            When ``text`` is not ``(len(events), spec.text_dim)``.
        """
        spec = self.spec
        k, length = spec.max_categories_per_event, spec.tokens_per_title
        cats: list[list[int]] = []
        items: list[int] = []
        tokens: list[tuple[int, ...]] = []
        gaps: list[int] = []
        kinds: list[int] = []
        prev = previous_time
        for event in events:
            idx = [i + 1 for i in self.taxonomy.indices(event.categories)[:k]]
            cats.append(idx + [0] * (k - len(idx)))
            items.append(item_bucket(event.item_id, spec.item_buckets))
            tokens.append(token_ids(event.title, spec.token_buckets, length))
            now = event.unix_time
            gaps.append(gap_bucket(None if prev is None else now - prev, spec.gap_buckets))
            kinds.append(_KIND_INDEX.get(event.kind, _KIND_INDEX["other"]))
            prev = now
        n = len(events)
        return Features(
            np.asarray(cats, dtype=np.int32).reshape(n, k),
            np.asarray(items, dtype=np.int32).reshape(n),
            np.asarray(tokens, dtype=np.int32).reshape(n, length),
            np.asarray(gaps, dtype=np.int32).reshape(n),
            np.asarray(kinds, dtype=np.int32).reshape(n),
            self._text(text, n),
        )

    def _text(self, text: np.ndarray | None, n: int) -> np.ndarray | None:
        dims = self.spec.text_dim
        if not dims:
            return None
        if text is None:
            return np.zeros((n, dims), np.float32)
        arr = np.asarray(text, dtype=np.float32)
        if arr.shape != (n, dims):
            from vane.shared.errors import SpecMismatchError

            raise SpecMismatchError(f"text embeddings have shape {arr.shape}; the model reads ({n}, {dims}): "
                                    f"one row of text_dim={dims} floats per event")
        return arr

    def category_matrix(self, events: Sequence[Event]) -> np.ndarray:
        """(N, C) float32: each row spreads 1 evenly over the event's categories."""
        out = np.zeros((len(events), self.spec.num_categories), dtype=np.float32)
        for i, event in enumerate(events):
            idx = self.category_indices(event)
            out[i, idx] = 1.0 / len(idx)
        return out

    def targets(self, events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Training targets after each event.

        Returns
        -------
        interest : (N, C) float32
            Row t is the category distribution of event t+1 (zeros for the last).
        intensity : (N, C) float32
            Row t is 1 where a category occurs in events t+1 .. t+H.
        valid : (N,) float32
            1 where event t has a successor, else 0.
        """
        onehot = self.category_matrix(events)
        n, h = len(events), self.spec.intensity_horizon
        interest = np.zeros_like(onehot)
        intensity = np.zeros_like(onehot)
        valid = np.zeros(n, dtype=np.float32)
        if n > 1:
            interest[:-1] = onehot[1:]
            valid[:-1] = 1.0
            present = (onehot > 0).astype(np.float32)
            # cumulative sums let each row take the max over its next h rows
            csum = np.vstack([np.zeros((1, present.shape[1]), np.float32), np.cumsum(present, axis=0)])
            for t in range(n - 1):
                stop = min(n, t + 1 + h)
                intensity[t] = (csum[stop] - csum[t + 1]) > 0
        return interest, intensity, valid


@dataclass
class TrainingBatch:
    """One static-shape batch for the ``train`` signature.

    Rows are windows of ``window`` events. ``weight`` is 0 on padding rows and
    positions, so they contribute nothing to the loss or the gradients.
    """

    features: Features  # arrays shaped (B, T, ...)
    h0: np.ndarray  # (B, U) float32
    c0: np.ndarray  # (B, U) float32
    interest: np.ndarray  # (B, T, C) float32
    intensity: np.ndarray  # (B, T, C) float32
    weight: np.ndarray  # (B, T) float32

    @property
    def num_examples(self) -> int:
        return int(np.count_nonzero(self.weight))


def make_windows(
    features: Features,
    interest: np.ndarray,
    intensity: np.ndarray,
    valid: np.ndarray,
    window: int,
) -> tuple[Features, np.ndarray, np.ndarray, np.ndarray]:
    """Cut one user's sequence into consecutive windows of ``window`` events.

    The last window is zero-padded (weight 0). Returns features shaped
    ``(W, T, ...)``, targets ``(W, T, C)`` and weights ``(W, T)``.
    """
    n = len(features)
    w = max(1, -(-n // window))
    pad = w * window - n

    def shape(a: np.ndarray) -> np.ndarray:
        padded = np.concatenate([a, np.zeros((pad,) + a.shape[1:], dtype=a.dtype)]) if pad else a
        return padded.reshape((w, window) + a.shape[1:])

    f = features.map(shape)
    return f, shape(interest), shape(intensity), shape(valid)


def pad_batch(
    features: Features,
    interest: np.ndarray,
    intensity: np.ndarray,
    weight: np.ndarray,
    batch: int,
    units: int,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
) -> TrainingBatch:
    """Pad up to ``batch`` windows with zero-weight rows."""
    rows = len(features)
    if rows > batch:
        raise ValueError(f"{rows} windows do not fit a batch of {batch}")
    pad = batch - rows

    def fill(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.zeros((pad,) + a.shape[1:], dtype=a.dtype)]) if pad else a

    h = np.zeros((rows, units), np.float32) if h0 is None else h0
    c = np.zeros((rows, units), np.float32) if c0 is None else c0
    f = features.map(fill)
    return TrainingBatch(f, fill(h), fill(c), fill(interest), fill(intensity), fill(weight).astype(np.float32))
