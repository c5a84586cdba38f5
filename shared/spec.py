"""Model hyperparameters that the server, the client and the weights agree on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from vane.shared.errors import SpecError
from vane.shared.jsonfile import read_json, write_json

OPTIMIZERS = ("sgd", "adam")
#: The ranker's fields (left out of a spec without a ranker).
RANKER_FIELDS = ("ranker_units", "ranker_candidates", "ranker_features", "ranker_batch")
#: The text input's fields (left out of a spec without it).
TEXT_FIELDS = ("text_dim", "text_proj")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes the model's shapes and its training rule.

    Parameters
    ----------
    num_categories : int, default 64
        Size of the taxonomy, ``other`` included. Both heads have this width.
    item_buckets : int, default 2048
        Hash buckets for item ids (bucket 0 is padding).
    token_buckets : int, default 1024
        Hash buckets for title tokens (bucket 0 is padding).
    tokens_per_title : int, default 8
        Title tokens kept per event (L).
    max_categories_per_event : int, default 4
        Categories kept per event; their embeddings are averaged.
    gap_buckets : int, default 24
        Log-scale time-gap buckets.
    window : int, default 16
        Events per training window (T).
    lstm_units : int, default 64
    category_dim, item_dim, token_dim, gap_dim, kind_dim : int
        Embedding widths.
    intensity_horizon : int, default 5
        The intensity head predicts which categories occur in the next this-many events.
    intensity_weight : float, default 0.5
        Weight of the intensity loss against the next-interest loss.
    batch : int, default 32
        The static training batch of the ``train`` signature.
    optimizer : {"adam", "sgd"}, default "adam"
    learning_rate : float, default 0.003
        The default; ``train`` also takes it as an input.
    seed : int, default 0
        Initialisation seed.
    ranker_units : int, default 0
        Width of the candidate ranker's first hidden layer (the second has half); 0: no ranker. The ranker
        scores the next-category candidates of :mod:`vane.shared.candidates` from their features.
    ranker_candidates : int, default 100
        Candidates scored per query (more are cut; fewer are masked).
    ranker_features : int, default 49
        Features per candidate: ``len(vane.shared.candidates.FIELDS)``.
    ranker_batch : int, default 32
        The static batch of the ``train_ranker`` signature (queries per step).
    text_dim : int, default 0
        Width of each event's text embedding (384 for the MiniLM encoder); 0: the model reads no text.
        The embedding enters the LSTM input through a trainable projection (``tanh(x W + b)``).
    text_proj : int, default 16
        Width of that projection, concatenated to the other embeddings.

    Fields of the ranker are left out of :meth:`to_dict` (and so of :attr:`hash`) while ``ranker_units``
    is 0, and those of the text input while ``text_dim`` is 0, so a spec without them keeps the hash it
    had before they existed.
    """

    num_categories: int = 64
    item_buckets: int = 2048
    token_buckets: int = 1024
    tokens_per_title: int = 8
    max_categories_per_event: int = 4
    gap_buckets: int = 24
    window: int = 16
    lstm_units: int = 64
    category_dim: int = 16
    item_dim: int = 32
    token_dim: int = 16
    gap_dim: int = 4
    kind_dim: int = 4
    intensity_horizon: int = 5
    intensity_weight: float = 0.5
    batch: int = 32
    optimizer: str = "adam"
    learning_rate: float = 0.003
    seed: int = 0
    ranker_units: int = 0
    ranker_candidates: int = 100
    ranker_features: int = 49
    ranker_batch: int = 32
    text_dim: int = 0
    text_proj: int = 16

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise SpecError(f"ModelSpec.{f.name} is {value!r}; expected an integer")
                at_least_two = f.name.endswith("buckets") or f.name == "num_categories"
                lower = 0 if f.name in ("seed", "ranker_units", "text_dim") else (2 if at_least_two else 1)
                if value < lower:
                    raise SpecError(f"ModelSpec.{f.name} is {value!r}; expected an integer >= {lower}")
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(f"ModelSpec.optimizer is {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        for name in ("learning_rate", "intensity_weight"):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not (value >= 0) or value == float("inf"):
                raise SpecError(f"ModelSpec.{name} is {value!r}; expected a finite number >= 0")
        if self.learning_rate == 0:
            raise SpecError("ModelSpec.learning_rate is 0; expected a positive number")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.ranker_units:
            for name in RANKER_FIELDS:
                del out[name]
        if not self.text_dim:
            for name in TEXT_FIELDS:
                del out[name]
        return out

    @property
    def has_ranker(self) -> bool:
        """Whether the model has the candidate ranker (``rank`` and ``train_ranker`` signatures)."""
        return self.ranker_units > 0

    @property
    def has_text(self) -> bool:
        """Whether the model reads each event's text embedding (a ``text`` input of ``text_dim`` floats)."""
        return self.text_dim > 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        if not isinstance(data, Mapping):
            raise SpecError(f"a ModelSpec must be a mapping of fields; got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown ModelSpec field {unknown[0]!r}; known fields: {', '.join(sorted(known))}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise SpecError(f"bad ModelSpec: {exc}") from None

    @property
    def hash(self) -> str:
        """A 16-hex-digit hash of every field, identical on every machine."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def input_dim(self) -> int:
        text = self.text_proj if self.text_dim else 0
        return self.category_dim + self.item_dim + self.token_dim + self.gap_dim + self.kind_dim + text

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        return cls.from_dict(read_json(path, "spec", SpecError))
