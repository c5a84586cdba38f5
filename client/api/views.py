"""The JSON the API answers with, computed from a tracker (no HTTP here; :mod:`.app` calls these).

Topics come at two levels: ``full`` (the categories as stored) and ``top`` (a path topic such as
``/Sports/Basketball`` counted under ``/Sports``; a flat name such as ``news`` is its own top level).
A top-level topic's share is the sum of its children's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from vane.client.api.errors import RequestError
from vane.client.blocks import is_blocked, topic_matches
from vane.client.history.rules import CategoryRules
from vane.client.history.site_topics import SiteTopics, choose_rules
from vane.client.tracker import InterestTracker
from vane.shared.events import OTHER, Event

LEVELS = ("top", "full")
#: Fields a browser visit may carry besides the event's own: used here, never stored as such.
VISIT_FIELDS = ("url", "transition")


def iso(unix: float) -> str:
    """Unix seconds as ISO-8601 UTC."""
    return datetime.fromtimestamp(unix, UTC).isoformat()


def parse_time(value: object, field: str) -> float:
    """An ISO-8601 time with an offset, or Unix seconds, as Unix seconds; :class:`RequestError` naming ``field``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.timestamp()
    raise RequestError(f"{field} is {value!r}; expected an ISO-8601 time with an offset "
                       "(2024-03-01T08:00:00Z) or Unix seconds")


def level_of(topic: str, level: str) -> str:
    """``topic`` at ``level``: itself for ``full``, its first path part for ``top``."""
    if level == "full" or not topic.startswith("/"):
        return topic
    head = topic.strip("/").split("/", 1)[0]
    return "/" + head if head else topic


def event_json(seq: int, event: Event) -> dict[str, Any]:
    """One stored event as the API shows it."""
    return {"seq": seq, "item_id": event.item_id, "title": event.title, "timestamp": event.timestamp.isoformat(),
            "categories": list(event.categories), "kind": event.kind}


def interests_json(tracker: InterestTracker, k: int, level: str) -> dict[str, Any]:
    """``tracker.interests()`` as topics with their share and the events behind them, at ``level``."""
    found = tracker.interests(k if level == "full" else 1 << 20)
    merged: dict[str, dict[str, Any]] = {}
    for c in found.top:
        name = level_of(c.category, level)
        entry = merged.setdefault(name, {"topic": name, "share": 0.0, "profile_share": 0.0,
                                         "model_probability": None, "events": []})
        entry["share"] += c.score
        entry["profile_share"] += c.profile_share
        if c.model_probability is not None:
            entry["model_probability"] = (entry["model_probability"] or 0.0) + c.model_probability
        entry["events"] += [{"seq": b.seq, "item_id": b.item_id, "title": b.title, "timestamp": iso(b.timestamp)}
                            for b in c.because]
    ranked = sorted(merged.values(), key=lambda e: (-e["share"], e["topic"]))[:k]
    return {"interests": ranked, "level": level, "source": found.source, "events_seen": found.events_seen}


def history_json(tracker: InterestTracker, buckets: int, level: str) -> dict[str, Any]:
    """Interests over time: the stored events' topics per equal span of time, as shares of each span.

    An event with several topics counts a part for each; blocked topics are left out.
    """
    blocked = tracker.blocked()
    stored = sorted((ev.unix_time, ev.categories) for _, ev in tracker.store.events())
    if not stored:
        return {"buckets": [], "level": level}
    first, last = stored[0][0], stored[-1][0]
    width = max(last - first, 1.0) / buckets
    counts: list[dict[str, float]] = [defaultdict(float) for _ in range(buckets)]
    for when, cats in stored:
        slot = min(int((when - first) / width), buckets - 1)
        for cat in cats:
            if not is_blocked(cat, blocked):
                counts[slot][level_of(cat, level)] += 1.0 / len(cats)
    out = []
    for i, bucket in enumerate(counts):
        total = sum(bucket.values())
        shares = {t: n / total for t, n in sorted(bucket.items())} if total else {}
        out.append({"start": iso(first + i * width), "end": iso(first + (i + 1) * width), "shares": shares,
                    "events": round(total, 6)})
    return {"buckets": out, "level": level}


_SOURCES = ("the model gives it {:.0%}", "{:.0%} of your recent events", "{:.0%} of your interests over time",
            "{:.0%} of what followed your last topics before", "your last event was about it")


def _rolled_up(part: Mapping[str, float], blocked: frozenset[str], level: str) -> Mapping[str, float]:
    """One source's probabilities at ``level``: a top-level topic's is its unblocked topics' summed."""
    if level == "full":
        return part
    out: dict[str, float] = defaultdict(float)
    for topic, p in part.items():
        if not is_blocked(topic, blocked):
            out[level_of(topic, level)] += p
    return out


def prediction_json(tracker: InterestTracker, k: int, level: str = "full") -> dict[str, Any]:
    """``tracker.predict(k, level=level)`` with, for each topic, the reasons: what each source of the blend
    gives it (at ``top``, what it gives the topics under it, summed)."""
    prediction = tracker.predict(k, level=level)
    blocked = tracker.blocked()
    parts = [_rolled_up(part, blocked, level)
             for part in tracker.predictor.components(tracker.personal_state, tracker.model_state.interest)]
    weights = tracker.mix.weights()
    predictions = []
    for topic, probability in prediction.next_interest:
        reasons = [(w * part.get(topic, 0.0), text.format(part.get(topic, 0.0)))
                   for text, part, w in zip(_SOURCES, parts, weights, strict=True)
                   if w > 0 and part.get(topic, 0.0) >= 0.005]
        predictions.append({"topic": topic, "probability": probability,
                            "reasons": [text for _, text in sorted(reasons, key=lambda r: -r[0])]})
    return {"predictions": predictions, "intensity": dict(prediction.intensity), "source": prediction.source,
            "level": level}


def events_json(tracker: InterestTracker, topic: str | None, limit: int) -> dict[str, Any]:
    """The stored events behind ``topic`` (itself or under it; all events when None), newest first."""
    stored = tracker.store.events()
    chosen = [(seq, ev) for seq, ev in stored
              if topic is None or any(topic_matches(c, topic) for c in ev.categories)]
    chosen.sort(key=lambda item: (item[1].unix_time, item[0]), reverse=True)
    return {"topic": topic, "total": len(chosen), "events": [event_json(seq, ev) for seq, ev in chosen[:limit]]}


def page_rules(tracker: InterestTracker) -> CategoryRules | SiteTopics:
    """The URL rules the history import would use for this store (Topics, unless it speaks another vocabulary)."""
    return choose_rules(None, tracker.taxonomy)


def categorize(tracker: InterestTracker, title: str | None, url: str | None) -> list[dict[str, Any]]:
    """The topics of a page as the store's categoriser gives them (a correction, the curated rules, the
    trained head, the zero-shot prior: :mod:`vane.client.categorize`), each with its source and confidence;
    ``other`` (source ``none``) when nothing answers. A store that speaks the coarse browsing vocabulary
    gets its coarse URL rules."""
    rules = page_rules(tracker)
    if isinstance(rules, SiteTopics):
        from vane.client.categorize_store import load_categorizer

        return [a.to_dict() for a in load_categorizer(tracker.store, rules=rules).categorize(title, url).assignments]
    found = [c for c in rules.categorize(url) if c != OTHER] if url else []
    return [{"topic": c, "source": "rule", "confidence": 1.0} for c in found] or \
        [{"topic": OTHER, "source": "none", "confidence": 0.0}]


def fill_other(tracker: InterestTracker, events: list[Event]) -> list[Event]:
    """Titled visits no rule knew (``other``) get the store's categoriser's topics, as in a history import
    (only with Topics rules and a text encoder installed in the store)."""
    from vane.client.categorize_store import fill_other as fill
    from vane.client.categorize_store import load_categorizer, store_encoder

    rules = page_rules(tracker)
    if not any(e.categories == (OTHER,) and e.title for e in events) or not isinstance(rules, SiteTopics) \
            or store_encoder(tracker.store) is None:
        return events
    return fill(load_categorizer(tracker.store, rules=rules), events)


def visit_event(data: object, rules: CategoryRules | SiteTopics) -> dict[str, Any]:
    """An event mapping from a request: ``url`` and ``transition`` taken out (a visit without categories
    gets ``rules``' topics for its URL), everything else left for :meth:`Event.from_dict` to judge."""
    if not isinstance(data, Mapping):
        return data  # type: ignore[return-value]  # Event.from_dict names the problem
    event = {k: v for k, v in data.items() if k not in VISIT_FIELDS}
    url = data.get("url")
    for field in VISIT_FIELDS:
        if data.get(field) is not None and not isinstance(data[field], str):
            raise RequestError(f"event field {field!r} is {data[field]!r}; expected a string")
    if url is None and isinstance(data.get("item_id"), str) and data["item_id"].startswith(("http://", "https://")):
        url = data["item_id"]
    if not event.get("categories") and url:
        event["categories"] = list(rules.categorize(url))
    return event


def versions_json(tracker: InterestTracker, vane_version: str) -> dict[str, Any]:
    """The installed model (its version and taxonomy version), the text encoder (its version) and Vane's version."""
    model = None
    if tracker.has_model:
        model = {"version": tracker.model_version,
                 "taxonomy": tracker.taxonomy.version if tracker.taxonomy is not None else None}
    encoder = getattr(tracker.store, "encoder_version", None)  # an EmbeddingEventStore with an encoder
    return {"model": model, "encoder": None if encoder is None else {"version": encoder}, "vane": vane_version}
