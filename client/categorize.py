"""The categoriser: Topics for an event that came without categories, from its title and URL.

Sources, in order (the first that answers wins; every assignment carries its source and confidence):

==============  ===================================================================  ==============
source          what                                                                 confidence
==============  ===================================================================  ==============
``correction``  the person corrected this item (:func:`vane.client.categorize_store  1.0
                .correct`): a correction beats everything
``rule``        the curated site rules (:mod:`vane.client.history.site_topics`)      1.0
``model``       the classifier head on the title embedding (:mod:`.topic_head`),     its probability
                only when its top probability reaches ``threshold``
``prior``       zero-shot: the cosine of the title embedding with the embedded       softmax of the
                topic texts (:mod:`vane.shared.topic_text`)                          cosines
``none``        light mode (no encoder) and no rule: ``other``                       0.0
==============  ===================================================================  ==============

The text embedded is :func:`vane.client.encoder.event_text` (the title, then the URL's words). Any
object with ``embed(texts) -> float32[n, dims]`` (L2-normalised rows) serves as the encoder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from vane.client.encoder import event_text
from vane.client.history.site_topics import SiteTopics, load_site_topics
from vane.client.history.urls import normalize_url
from vane.client.topic_head import SoftmaxHead, head_topics
from vane.shared.errors import ConfigError
from vane.shared.events import OTHER
from vane.shared.topic_text import all_topic_texts

#: The head answers only when its top probability reaches this.
HEAD_THRESHOLD = 0.5
#: Temperature of the prior's softmax over cosines (cosines of sentence embeddings differ by ~0.1).
PRIOR_TEMPERATURE = 0.05
#: The sources, strongest first.
SOURCES = ("correction", "rule", "model", "prior", "none")


class Encoder(Protocol):
    """What the categoriser needs of a text encoder (:class:`vane.client.encoder.TextEncoder`)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Assignment:
    """One topic given to an event: its full path, the source that gave it, and the confidence in [0, 1]."""

    topic: str
    source: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "source": self.source, "confidence": round(float(self.confidence), 6)}


@dataclass(frozen=True)
class Categorization:
    """The topics of one title and URL, strongest first, all from one source."""

    title: str | None
    url: str | None
    assignments: tuple[Assignment, ...]

    @property
    def topics(self) -> tuple[str, ...]:
        """The topic paths (``("other",)`` when nothing answered): the event's categories."""
        return tuple(a.topic for a in self.assignments)

    @property
    def source(self) -> str:
        return self.assignments[0].source

    @property
    def confidence(self) -> float:
        return self.assignments[0].confidence

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "url": self.url, "source": self.source,
                "topics": [a.to_dict() for a in self.assignments]}


def _softmax(values: np.ndarray, temperature: float) -> np.ndarray:
    z = values / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def correction_key(item: str) -> str:
    """How corrections are keyed: the normalised URL when ``item`` is one, else the item id as given."""
    return normalize_url(item) or item.strip()


@dataclass
class Categorizer:
    """Gives topics to titles and URLs (see the module docstring for the order).

    Parameters
    ----------
    rules : SiteTopics, optional
        The curated site rules; the packaged ones when omitted.
    encoder : Encoder, optional
        Without one (light mode) only corrections and rules answer.
    head : SoftmaxHead, optional
        The trained classifier head; without one the prior answers after the rules.
    corrections : mapping of item key → topic paths, optional
        The person's corrections (:func:`correction_key` keys).
    threshold : float, default :data:`HEAD_THRESHOLD`
    topic_vectors : array, optional
        ``float32[n_topics, dims]``: the embedded topic texts, when already known (else the encoder
        embeds :func:`vane.shared.topic_text.all_topic_texts` on first use).
    """

    rules: SiteTopics = field(default_factory=load_site_topics)
    encoder: Encoder | None = None
    head: SoftmaxHead | None = None
    corrections: Mapping[str, Sequence[str]] = field(default_factory=dict)
    threshold: float = HEAD_THRESHOLD
    topic_vectors: np.ndarray | None = None
    _prior_matrix: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0):
            raise ConfigError(f"threshold is {self.threshold!r}; expected a probability in [0, 1]")

    # ---- the sources -------------------------------------------------------------------------------
    def prior_matrix(self) -> np.ndarray:
        """``float32[n_topics, dims]``: the embedded topic texts (computed once per categoriser)."""
        if self._prior_matrix is None and self.topic_vectors is not None:
            matrix = np.asarray(self.topic_vectors, dtype=np.float32)
            if matrix.ndim != 2 or matrix.shape[0] != len(head_topics()):
                raise ConfigError(f"topic_vectors have shape {list(matrix.shape)}; expected "
                                  f"[{len(head_topics())}, dims]")
            self._prior_matrix = matrix
        if self._prior_matrix is None:
            if self.encoder is None:
                raise ConfigError("the zero-shot prior needs a text encoder; none is installed (light mode)")
            self._prior_matrix = np.asarray(self.encoder.embed(all_topic_texts()), dtype=np.float32)
        return self._prior_matrix

    def from_prior(self, embedding: np.ndarray) -> Assignment:
        """The prior's top topic for one embedding, its confidence the softmax of the cosines."""
        cosines = self.prior_matrix() @ np.asarray(embedding, dtype=np.float32)
        probs = _softmax(cosines.astype(np.float64), PRIOR_TEMPERATURE)
        best = int(np.argmax(probs))
        return Assignment(head_topics()[best], "prior", float(np.clip(probs[best], 0.0, 1.0)))

    def from_head(self, embedding: np.ndarray) -> tuple[Assignment, ...]:
        """The head's topics whose probability reaches the threshold (top first); empty when none does."""
        if self.head is None:
            return ()
        probs = self.head.probabilities(np.asarray(embedding, dtype=np.float32))[0]
        order = np.argsort(-probs, kind="stable")
        names = head_topics()
        return tuple(Assignment(names[i], "model", float(np.clip(probs[i], 0.0, 1.0)))
                     for i in order[:3] if probs[i] >= self.threshold)

    def from_rules(self, url: str | None) -> tuple[Assignment, ...]:
        """The curated rules' topics for ``url`` (confidence 1.0); empty when none matches."""
        return tuple(Assignment(t, "rule", 1.0) for t in self.rules.topics(url)) if url else ()

    def from_corrections(self, url: str | None, item_id: str | None = None) -> tuple[Assignment, ...]:
        """The person's correction of this item (by item id, else by URL); empty when there is none."""
        for key in (item_id, url):
            if key:
                found = self.corrections.get(correction_key(key))
                if found:
                    return tuple(Assignment(t, "correction", 1.0) for t in found)
        return ()

    # ---- categorising -------------------------------------------------------------------------------
    def categorize(self, title: str | None, url: str | None = None, *, item_id: str | None = None,
                   embedding: np.ndarray | None = None) -> Categorization:
        """The topics of one title and URL (pass ``embedding`` when it is already known)."""
        return self.categorize_many([(title, url)], item_ids=[item_id],
                                    embeddings=None if embedding is None else np.asarray(embedding)[None, :])[0]

    def categorize_many(self, items: Iterable[tuple[str | None, str | None]], *,
                        item_ids: Sequence[str | None] | None = None,
                        embeddings: np.ndarray | None = None) -> list[Categorization]:
        """:meth:`categorize` for many (title, url) pairs, in order; what needs the encoder is embedded in one batch."""
        pairs = [(_text(title, "title"), _text(url, "url")) for title, url in items]
        ids = list(item_ids) if item_ids is not None else [None] * len(pairs)
        if len(ids) != len(pairs):
            raise ConfigError(f"{len(ids)} item ids for {len(pairs)} items; expected one each")
        results: list[tuple[Assignment, ...]] = []
        pending: list[int] = []
        for i, (title, url) in enumerate(pairs):
            found = self.from_corrections(url, ids[i]) or self.from_rules(url)
            results.append(found)
            if not found and (title or url):
                pending.append(i)
        if pending and (self.encoder is not None or embeddings is not None):
            vectors = self._vectors(pairs, pending, embeddings)
            has_prior = self.encoder is not None or self.topic_vectors is not None
            for row, i in enumerate(pending):
                found = self.from_head(vectors[row])
                results[i] = found or ((self.from_prior(vectors[row]),) if has_prior else ())
        return [Categorization(title, url, found or (Assignment(OTHER, "none", 0.0),))
                for (title, url), found in zip(pairs, results, strict=True)]

    def _vectors(self, pairs: list[tuple[str | None, str | None]], pending: list[int],
                 embeddings: np.ndarray | None) -> np.ndarray:
        if embeddings is not None:
            given = np.asarray(embeddings, dtype=np.float32)
            if given.ndim != 2 or given.shape[0] != len(pairs):
                raise ConfigError(f"embeddings have shape {list(given.shape)}; expected [{len(pairs)}, dims]")
            return given[pending]
        assert self.encoder is not None
        return np.asarray(self.encoder.embed([event_text(*pairs[i]) for i in pending]), dtype=np.float32)


def _text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} is {value!r}; expected a string or nothing")
    return value.strip() or None
