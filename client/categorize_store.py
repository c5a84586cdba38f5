"""What the categoriser keeps in the store, sealed: the person's corrections and the trained head.

=========================  ==========================================================================
state slot                 holds
=========================  ==========================================================================
``categorize/corrections``  JSON: item key (:func:`~vane.client.categorize.correction_key`) →
                           ``{"topics": [paths], "title": str | None}``
``categorize/head``        :meth:`SoftmaxHead.to_bytes` (the classifier head's flat float32 weights)
=========================  ==========================================================================

Both are sealed like every state blob of the store (AES-GCM, bound to the store and slot) and
survive reopening. Both are marked *derived* from the events, so ``forget`` and retention change them
in the same transaction as the events (a crash keeps both or neither change). The corrections are
kept *per item* (``put_state(..., per_item=True)``, keys from :func:`~vane.client.store_rows.item_key`,
the same as :func:`~vane.client.categorize.correction_key`): the correction of an item left with no
stored event goes with its title, the others stay; forgetting everything removes them all. The head
may have learnt from the forgotten events, so it goes whole and is trained again with :func:`train_head`.

A correction is a label: :func:`labelled_examples` gives the head's training
data from the corrections and from the stored events whose categories are Topics paths (rule- or
app-labelled) and that have a title; a correction of an item wins over that item's stored categories.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from vane.client.categorize import Categorizer, Encoder, correction_key
from vane.client.embeddings import EmbeddingEventStore
from vane.client.encoder import event_text
from vane.client.history.site_topics import SiteTopics, load_site_topics
from vane.client.store import EventStore
from vane.client.topic_head import SoftmaxHead, TrainReport, head_topics
from vane.shared.errors import ConfigError, ModelError, TaxonomyError
from vane.shared.events import MAX_CATEGORIES, OTHER, Event
from vane.shared.topics import topics

CORRECTIONS = "categorize/corrections"
HEAD = "categorize/head"


@dataclass(frozen=True)
class Correction:
    """One kept correction: the item it applies to, its topics (full paths) and the title seen with it."""

    key: str
    topics: tuple[str, ...]
    title: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.key, "topics": list(self.topics), "title": self.title}


def read_corrections(store: EventStore) -> dict[str, Correction]:
    """Every correction kept in ``store``, by item key."""
    raw = store.get_state(CORRECTIONS)
    if not raw:
        return {}
    data = json.loads(raw)
    return {key: Correction(key, tuple(value["topics"]), value.get("title")) for key, value in data.items()}


def _topic_paths(values: Iterable[object]) -> tuple[str, ...]:
    if isinstance(values, (str, int)):
        values = [values]
    paths: list[str] = []
    tree = topics()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f"topic {value!r} is not a Topics v2 topic; expected a full path such as "
                              "'/Sports/Basketball' or an id such as 304")
        try:
            paths.append(tree.get(value).path)
        except TaxonomyError as exc:
            raise ConfigError(str(exc)) from None
    paths = list(dict.fromkeys(paths))
    if not paths or len(paths) > MAX_CATEGORIES:
        raise ConfigError(f"a correction names {len(paths)} topics; expected 1 to {MAX_CATEGORIES}")
    return tuple(paths)


def correct(store: EventStore, seq_or_item: int | str, topic_list: Iterable[object]) -> Correction:
    """Keep the person's topics for a stored event (by ``seq``) or an item (its id or URL), sealed.

    The correction beats every other source for that item from now on and becomes a training label.
    Topics are full paths or ids. Nothing changes when an argument is refused.

    Raises
    ------
    ConfigError
        A topic that is not a Topics v2 topic, no topics, or a ``seq`` with no stored event.
    """
    paths = _topic_paths(topic_list)
    title: str | None = None
    if isinstance(seq_or_item, int) and not isinstance(seq_or_item, bool):
        found = store.events(since_seq=seq_or_item - 1, limit=1) if seq_or_item >= 1 else []
        if not found or found[0][0] != seq_or_item:
            raise ConfigError(f"no stored event has seq {seq_or_item}; expected the seq of an event in this store")
        item, title = found[0][1].item_id, found[0][1].title
    elif isinstance(seq_or_item, str) and seq_or_item.strip():
        item = seq_or_item
        for _, event in store.events():
            if event.item_id == item or correction_key(event.item_id) == correction_key(item):
                title = event.title or title
    else:
        raise ConfigError(f"the event to correct is {seq_or_item!r}; expected a stored seq (int) or an item id / URL")
    key = correction_key(item)
    kept = {k: c.to_dict() for k, c in read_corrections(store).items()}
    kept[key] = {"item": key, "topics": list(paths), "title": title}
    store.put_state(CORRECTIONS, json.dumps({k: {"topics": v["topics"], "title": v["title"]}
                                             for k, v in kept.items()}, ensure_ascii=False).encode("utf-8"),
                    per_item=True)
    return Correction(key, paths, title)


def read_head(store: EventStore) -> SoftmaxHead | None:
    """The trained head kept in ``store``, if any."""
    raw = store.get_state(HEAD)
    return SoftmaxHead.from_bytes(raw) if raw else None


def save_head(store: EventStore, head: SoftmaxHead) -> None:
    """Keep ``head`` (sealed)."""
    if head.n_topics != len(head_topics()):
        raise ModelError(f"the head has {head.n_topics} outputs; expected {len(head_topics())} (one per topic)")
    store.put_state(HEAD, head.to_bytes(), derived=True)


def store_encoder(store: EventStore) -> Encoder | None:
    """The text encoder installed in ``store`` (a tracker's embedding store), if any."""
    return store.encoder if isinstance(store, EmbeddingEventStore) else None


def load_categorizer(store: EventStore, encoder: Encoder | None = None, rules: SiteTopics | None = None,
                     **options: Any) -> Categorizer:
    """A :class:`Categorizer` with the store's corrections and head, and ``encoder`` (else the store's own)."""
    corrections = {key: c.topics for key, c in read_corrections(store).items()}
    return Categorizer(rules or load_site_topics(), encoder or store_encoder(store), read_head(store), corrections,
                       **options)


def labelled_examples(store: EventStore) -> list[tuple[str, int]]:
    """The head's training data: (text to embed, output index), corrections first, then labelled events.

    An event is labelled when it has a title and its first category is a Topics path; an item the
    person corrected is labelled by the correction instead of its stored categories.
    """
    return [(text, label) for _, text, label in _labelled(store)]


def _labelled(store: EventStore) -> list[tuple[int | None, str, int]]:
    index = {path: i for i, path in enumerate(head_topics())}
    corrections = read_corrections(store)
    out: list[tuple[int | None, str, int]] = [
        (None, event_text(c.title, c.key), index[c.topics[0]]) for c in corrections.values() if c.title]
    for seq, event in store.events():
        if event.title and event.categories[0] in index and correction_key(event.item_id) not in corrections:
            out.append((seq, event_text(event.title, event.item_id), index[event.categories[0]]))
    return out


def _example_vectors(store: EventStore, encoder: Encoder, examples: list[tuple[int | None, str, int]]) -> np.ndarray:
    """The examples' embeddings: the ones sealed in the store (same encoder version), the rest embedded now."""
    version = getattr(encoder, "version", None)
    stored: dict[int, np.ndarray] = {}
    if isinstance(store, EmbeddingEventStore) and version is not None:
        stored = store.embeddings([seq for seq, _, _ in examples if seq is not None], version=version)
    missing = [i for i, (seq, _, _) in enumerate(examples) if seq not in stored]
    fresh = np.asarray(encoder.embed([examples[i][1] for i in missing]), dtype=np.float32) if missing else None
    rows: list[np.ndarray] = [stored[seq] if seq in stored else np.zeros(0, np.float32) for seq, _, _ in examples]
    for row, i in enumerate(missing):
        assert fresh is not None
        rows[i] = fresh[row]
    return np.stack(rows).astype(np.float32)


def fill_other(categorizer: Categorizer, events: list[Event]) -> list[Event]:
    """``events`` with each uncategorised (``other``) titled one given the categoriser's topics, in one batch."""
    todo = [i for i, e in enumerate(events) if e.categories == (OTHER,) and e.title]
    if not todo:
        return events
    found = categorizer.categorize_many([(events[i].title, events[i].item_id) for i in todo],
                                        item_ids=[events[i].item_id for i in todo])
    out = list(events)
    for i, result in zip(todo, found, strict=True):
        if result.topics != (OTHER,):
            out[i] = replace(events[i], categories=result.topics)
    return out


def train_head(store: EventStore, encoder: Encoder, *, epochs: int = 300, min_examples: int = 20,
               **fit_options: Any) -> TrainReport:
    """Train the store's head on :func:`labelled_examples` (from the kept head, else from zeros) and keep it.

    The examples' embeddings sealed in the store are used as they are; only the others are embedded.

    Raises
    ------
    ConfigError
        Fewer than ``min_examples`` labelled examples (nothing is changed).
    """
    examples = _labelled(store)
    if len(examples) < min_examples:
        raise ConfigError(f"{len(examples)} labelled events with a title; the head needs at least {min_examples}")
    x = _example_vectors(store, encoder, examples)
    head = read_head(store) or SoftmaxHead.zeros(x.shape[1])
    report = head.fit(x, [label for _, _, label in examples], epochs=epochs, **fit_options)
    save_head(store, head)
    return report
