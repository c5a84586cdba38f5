"""``InterestTracker``: the SDK an app embeds.

One tracker owns one encrypted :class:`~vane.client.store.EventStore`. Each
recorded event is validated, sealed into the store, featurised and pushed
through the LiteRT ``step`` signature, so the LSTM state advances in constant
time per event. The answers (:meth:`interests`, :meth:`predict`,
:meth:`shifts`, :meth:`recommend`) read that cached state.

Rules for missing and duplicate data
    - An event missing ``item_id``, ``timestamp`` or ``kind`` is rejected.
    - A missing category maps to ``other``; a missing ``dwell_s`` stays unknown.
    - An event repeating the previous event's item within one second is a
      duplicate: it is not stored and :meth:`record` returns ``None``.

Without a model the tracker answers from the decayed profile, a short-memory
profile and this person's first-order transitions, and every answer says
``source="profile"``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from vane.client.profile import CategoryInterest, DecayedProfile, InterestProfile, TransitionEstimate
from vane.client.runtime import LiteModel
from vane.client.runtime import Prediction as Prediction_
from vane.client.shifts import Shift, ShiftDetector
from vane.client.store import EventStore
from vane.shared.blend import MIX_FIELDS, BlendCase, grid_ranks
from vane.shared.errors import ConfigError, EventValidationError, SpecMismatchError, TaxonomyError
from vane.shared.events import OTHER, Event
from vane.shared.features import Features, Featurizer, make_windows, pad_batch
from vane.shared.metrics import RankingAccumulator, classification_report
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

log = logging.getLogger("vane.client")

_STATE = "tracker/state"
_MODEL = "tracker/model"
_MODEL_VERSION = "tracker/model-version"
_WEIGHTS = "tracker/weights"
_TAXONOMY = "tracker/taxonomy"
_MIX = "tracker/mix"

DUPLICATE_WINDOW_S = 1.0


@dataclass(frozen=True)
class Mix:
    """How the next-interest distribution blends its sources (weights are renormalised).

    The defaults are a prior; a federation picks better weights for its population by federated
    evaluation (each device scores candidate mixes on its own held-out events) and sends them to
    the devices, which keep them (:meth:`InterestTracker.recommend_mix`).
    """

    model: float = 0.55
    recent: float = 0.25
    profile: float = 0.1
    transitions: float = 0.1
    #: The last event's own categories (a repeat-last prior); 0 leaves them to the other sources.
    last: float = 0.0

    def __post_init__(self) -> None:
        values = self.weights()
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
            raise ConfigError(f"mix weights are {dict(zip(MIX_FIELDS, values, strict=True))}; expected finite "
                              "numbers >= 0 with a positive sum")

    def weights(self) -> tuple[float, ...]:
        """The weights in :data:`vane.shared.blend.MIX_FIELDS` order."""
        return tuple(getattr(self, name) for name in MIX_FIELDS)

    @classmethod
    def of(cls, weights: Sequence[float] | Mapping[str, float]) -> Mix:
        """From five weights in ``MIX_FIELDS`` order, or a mapping of field names (missing ones are 0)."""
        if isinstance(weights, Mapping):
            unknown = set(weights) - set(MIX_FIELDS)
            if unknown:
                raise ConfigError(f"mix has unknown fields {sorted(unknown)}; expected some of {list(MIX_FIELDS)}")
            return cls(**{name: float(weights.get(name, 0.0)) for name in MIX_FIELDS})
        values = list(weights)
        if len(values) != len(MIX_FIELDS):
            raise ConfigError(f"mix is {values!r}; expected {len(MIX_FIELDS)} weights ({', '.join(MIX_FIELDS)})")
        return cls(*(float(v) for v in values))


@dataclass(frozen=True)
class Prediction:
    """What comes next: the next-interest distribution and next-window intensity."""

    next_interest: tuple[tuple[str, float], ...]
    intensity: tuple[tuple[str, float], ...]
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "next_interest": [{"category": c, "probability": p} for c, p in self.next_interest],
            "intensity": [{"category": c, "probability": p} for c, p in self.intensity],
        }


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "reason": self.reason}


@dataclass(frozen=True)
class TrainResult:
    loss: float
    num_examples: int
    steps: int
    epochs: int
    holdout: int


@dataclass
class _Personal:
    """Everything the tracker knows without the model; rebuilt by replaying events."""

    profile: DecayedProfile
    detector: ShiftDetector
    transitions: TransitionEstimate = field(default_factory=TransitionEstimate)
    last_time: float | None = None
    last_item: str | None = None
    last_seq: int = 0

    def update(self, seq: int, event: Event) -> Shift | None:
        now = event.unix_time
        self.profile.update(seq, event.item_id, event.title, event.categories, now)
        self.transitions.update(event.categories)
        shift = self.detector.update(event.categories, seq, now)
        self.last_time, self.last_item, self.last_seq = now, event.item_id, seq
        return shift

    def update_many(self, items: list[tuple[int, Event]]) -> None:
        """The same as :meth:`update` for each item, with the shift detector run as one block."""
        profile, transitions = self.profile, self.transitions
        for seq, event in items:
            profile.update(seq, event.item_id, event.title, event.categories, event.unix_time)
            transitions.update(event.categories)
        self.detector.update_many([(ev.categories, seq, ev.unix_time) for seq, ev in items])
        if items:
            seq, last = items[-1]
            self.last_time, self.last_item, self.last_seq = last.unix_time, last.item_id, seq

    def distributions(self) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        recent = self.detector.short
        return recent, self.profile.shares(), self.transitions.next_distribution()

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile.to_dict(),
            "detector": self.detector.to_dict(),
            "transitions": self.transitions.to_dict(),
            "last_time": self.last_time,
            "last_item": self.last_item,
            "last_seq": self.last_seq,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Personal:
        return cls(
            profile=DecayedProfile.from_dict(data["profile"]),
            detector=ShiftDetector.from_dict(data["detector"]),
            transitions=TransitionEstimate.from_dict(data["transitions"]),
            last_time=data["last_time"],
            last_item=data["last_item"],
            last_seq=int(data["last_seq"]),
        )


def _as_event(event: Event | Mapping[str, Any]) -> Event:
    if isinstance(event, Event):
        return event
    if isinstance(event, Mapping):
        return Event.from_dict(event)
    raise EventValidationError("event", event, "an Event or a mapping of event fields")


def _blend(parts: Sequence[tuple[float, dict[str, float]]]) -> dict[str, float]:
    out: dict[str, float] = {}
    total_w = sum(w for w, d in parts if d and w > 0)
    if total_w <= 0:
        return out
    for w, dist in parts:
        if not dist or w <= 0:
            continue
        for cat, p in dist.items():
            out[cat] = out.get(cat, 0.0) + w / total_w * p
    return out


def _infer_sequence(model: LiteModel, feats: Features, h: np.ndarray, c: np.ndarray) -> Prediction_:
    """Run one person's (N, ...) features through ``infer`` from state (h, c); outputs are (N, C)."""
    batched = feats.map(lambda a: a[None])
    out = model.infer(batched, h0=h, c0=c)
    return Prediction_(out.interest[0], out.intensity[0], out.h, out.c)


def _ranked(dist: dict[str, float], k: int | None = None) -> list[tuple[str, float]]:
    items = sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))
    return items if k is None else items[:k]


class InterestTracker:
    """Tracks one person's interests on their device.

    Open one with :meth:`open`; it is safe to call from several threads.
    """

    def __init__(self, store: EventStore, taxonomy: Taxonomy | None, model: LiteModel | None,
                 model_version: str | None, half_life_s: float, mix: Mix,
                 detector_config: Mapping[str, float]) -> None:
        self._store = store
        self._taxonomy = taxonomy
        self._model = model
        self._model_version = model_version
        self._half_life_s = half_life_s
        self._mix = mix
        self._mix_explicit = True
        self._detector_config = dict(detector_config)
        self._lock = threading.RLock()
        self._featurizer = Featurizer(model.spec, taxonomy) if model is not None and taxonomy is not None else None
        self._h: np.ndarray | None = None
        self._c: np.ndarray | None = None
        self._interest: np.ndarray | None = None
        self._intensity: np.ndarray | None = None
        self._personal = self._new_personal()
        self._dirty_model_state = False
        self._unsaved = 0
        # The saved state is a cache: events after it are replayed exactly on open, so saving
        # it rarely keeps record() fast at the cost of a short catch-up after a crash.
        self.persist_every = 128

    # ---- opening --------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        key_file: str | os.PathLike[str] | None = None,
        passphrase: str | bytes | None = None,
        key: bytes | None = None,
        model: bytes | str | os.PathLike[str] | None = None,
        taxonomy: Taxonomy | str | os.PathLike[str] | None = None,
        model_version: str | None = None,
        half_life_days: float = 7.0,
        mix: Mix | None = None,
        shift_detector: Mapping[str, float] | None = None,
        **store_options: Any,
    ) -> InterestTracker:
        """Open (or create) the tracker whose encrypted store is ``path``.

        Parameters
        ----------
        path : path-like
            The store file.
        key_file, passphrase, key
            Exactly one key source, see :meth:`EventStore.open`.
        model : bytes or path, optional
            A ``.tflite`` model exported by ``vane server export-model``. When
            omitted the model last installed in this store is used, if any.
        taxonomy : Taxonomy or path, optional
            The category vocabulary the model was trained with. Required with
            a model unless the store already holds one.
        model_version : str, optional
            A label for ``model``, kept in the store.
        half_life_days : float, default 7
            Half-life of the decayed interest profile.
        mix : Mix, optional
            How "what comes next" blends its sources. When omitted, the mix the federation last
            recommended to this store (:meth:`recommend_mix`), else the defaults of :class:`Mix`.
        """
        if not (isinstance(half_life_days, (int, float)) and half_life_days > 0 and math.isfinite(half_life_days)):
            raise ConfigError(f"half_life_days is {half_life_days!r}; expected a positive number of days")
        store = EventStore.open(path, key_file=key_file, passphrase=passphrase, key=key, **store_options)
        try:
            return cls._from_store(store, model, taxonomy, model_version, half_life_days * 86400.0,
                                   mix, shift_detector or {})
        except BaseException:
            store.close()
            raise

    @classmethod
    def _from_store(cls, store: EventStore, model: bytes | str | os.PathLike[str] | None,
                    taxonomy: Taxonomy | str | os.PathLike[str] | None, model_version: str | None,
                    half_life_s: float, mix: Mix | None, detector_config: Mapping[str, float]) -> InterestTracker:
        tax = cls._resolve_taxonomy(store, taxonomy)
        blob: bytes | None
        if model is None:
            blob = store.get_state(_MODEL)
            stored_version = store.get_state(_MODEL_VERSION)
            model_version = stored_version.decode() if stored_version else None
        else:
            blob = model if isinstance(model, bytes) else Path(model).read_bytes()
            model_version = model_version or hashlib.sha256(blob).hexdigest()[:12]
        lite = LiteModel.from_bytes(blob) if blob is not None else None
        if lite is not None and tax is None:
            raise TaxonomyError("a model needs its taxonomy: pass taxonomy=... (the one the model was trained with)")
        if lite is not None and tax is not None and len(tax) != lite.spec.num_categories:
            raise SpecMismatchError(
                f"taxonomy has {len(tax)} categories but the model expects {lite.spec.num_categories}"
            )
        stored_mix = store.get_state(_MIX)
        chosen = mix or (Mix.of(json.loads(stored_mix)) if stored_mix else Mix())
        tracker = cls(store, tax, lite, model_version, half_life_s, chosen, detector_config)
        tracker._mix_explicit = mix is not None
        if tax is not None and taxonomy is not None:
            store.put_state(_TAXONOMY, json.dumps(tax.to_dict()).encode())
        if model is not None and blob is not None:
            tracker._persist_model(blob)
        elif lite is not None:
            stored = store.get_state(_WEIGHTS)
            if stored is not None:
                weights = Weights.from_bytes(stored)
                if weights.spec_hash == lite.spec.hash:
                    lite.set_weights(weights)
        tracker._load_state(fresh_model=model is not None)
        return tracker

    @staticmethod
    def _resolve_taxonomy(store: EventStore, taxonomy: Taxonomy | str | os.PathLike[str] | None) -> Taxonomy | None:
        if isinstance(taxonomy, Taxonomy):
            return taxonomy
        if taxonomy is not None:
            return Taxonomy.load(taxonomy)
        stored = store.get_state(_TAXONOMY)
        return Taxonomy.from_dict(json.loads(stored)) if stored else None

    def _new_personal(self) -> _Personal:
        return _Personal(DecayedProfile(half_life_s=self._half_life_s), ShiftDetector(**self._detector_config))

    def _load_state(self, fresh_model: bool) -> None:
        raw = self._store.get_state(_STATE)
        state = json.loads(raw) if raw else None
        if state is not None:
            self._personal = _Personal.from_dict(state["personal"])
            same_model = state.get("model_version") == self._model_version and not fresh_model
            if self._model is not None and same_model and state.get("h") is not None:
                self._h = np.asarray(state["h"], np.float32).reshape(1, -1)
                self._c = np.asarray(state["c"], np.float32).reshape(1, -1)
                self._interest = np.asarray(state["interest"], np.float32)
                self._intensity = np.asarray(state["intensity"], np.float32)
            elif self._model is not None:
                self._dirty_model_state = True
        behind = self._store.events(since_seq=self._personal.last_seq)
        if behind and not self._dirty_model_state and self._model is not None and self._h is None:
            self._dirty_model_state = True
        for seq, event in behind:  # catch up on events stored after the last saved state
            self._advance(seq, event, step_model=not self._dirty_model_state)
        if behind:
            self._save_state()

    # ---- properties -----------------------------------------------------------------------------

    @property
    def store(self) -> EventStore:
        return self._store

    @property
    def taxonomy(self) -> Taxonomy | None:
        return self._taxonomy

    @property
    def model_version(self) -> str | None:
        return self._model_version

    @property
    def has_model(self) -> bool:
        return self._model is not None

    @property
    def spec(self) -> Any:
        return self._model.spec if self._model is not None else None

    # ---- recording ------------------------------------------------------------------------------

    def _is_duplicate(self, event: Event, last_item: str | None, last_time: float | None) -> bool:
        return (
            last_item == event.item_id
            and last_time is not None
            and 0 <= event.unix_time - last_time < DUPLICATE_WINDOW_S
        )

    def record(self, event: Event | Mapping[str, Any]) -> int | None:
        """Validate, store and learn from one event.

        Returns
        -------
        int or None
            The event's sequence number in the store, or None for a duplicate.
        """
        ev = _as_event(event)
        with self._lock:
            if self._is_duplicate(ev, self._personal.last_item, self._personal.last_time):
                return None
            seq = self._store.append(ev)
            self._advance(seq, ev, step_model=True)
            self._after_records(1)
            return seq

    def record_many(self, events: Iterable[Event | Mapping[str, Any]]) -> list[int]:
        """Record a batch all-or-nothing: one bad event stores none of them.

        Duplicates (within the batch or against the last recorded event) are dropped.
        """
        batch = [_as_event(e) for e in events]
        with self._lock:
            kept: list[Event] = []
            last_item, last_time = self._personal.last_item, self._personal.last_time
            for ev in batch:
                if not self._is_duplicate(ev, last_item, last_time):
                    kept.append(ev)
                last_item, last_time = ev.item_id, ev.unix_time
            seqs = self._store.append_many(kept)
            if len(kept) > 8 and self._model is None:
                self._personal.update_many(list(zip(seqs, kept)))
            elif len(kept) > 8 and not self._dirty_model_state:
                self._advance_many(list(zip(seqs, kept)))
            else:
                for seq, ev in zip(seqs, kept):
                    self._advance(seq, ev, step_model=True)
            self._after_records(len(kept))
            return seqs

    def _advance(self, seq: int, event: Event, step_model: bool) -> None:
        previous = self._personal.last_time
        self._personal.update(seq, event)
        if step_model and self._model is not None and self._featurizer is not None and not self._dirty_model_state:
            feats = self._featurizer.encode([event], previous_time=previous)
            self._ensure_state()
            out = self._model.step(feats, self._h, self._c)
            self._interest, self._intensity, self._h, self._c = out.interest, out.intensity, out.h, out.c
        elif self._model is not None:
            self._dirty_model_state = True

    def _advance_many(self, items: list[tuple[int, Event]]) -> None:
        """Advance through many events with chunked ``infer`` calls (identical to stepping)."""
        assert self._featurizer is not None and self._model is not None
        previous = self._personal.last_time
        self._personal.update_many(items)
        feats = self._featurizer.encode([ev for _, ev in items], previous_time=previous)
        self._ensure_state()
        self._run_chunks(feats)

    def _run_chunks(self, feats: Features) -> None:
        assert self._model is not None and self._h is not None and self._c is not None
        out = _infer_sequence(self._model, feats, self._h, self._c)
        self._h, self._c = out.h, out.c
        self._interest, self._intensity = out.interest[-1], out.intensity[-1]

    def _ensure_state(self) -> None:
        if self._h is None or self._c is None:
            assert self._model is not None
            units = self._model.spec.lstm_units
            self._h = np.zeros((1, units), np.float32)
            self._c = np.zeros((1, units), np.float32)

    def _rebuild_model_state(self) -> None:
        """Recompute the LSTM state from the whole stored history, once."""
        self._h = self._c = self._interest = self._intensity = None
        self._dirty_model_state = False
        if self._model is None or self._featurizer is None:
            return
        events = [ev for _, ev in self._store.events()]
        self._ensure_state()
        if events:
            self._run_chunks(self._featurizer.encode(events))

    def _after_records(self, n: int) -> None:
        self._unsaved += n
        if self._unsaved >= self.persist_every:
            self._save_state()

    def _save_state(self) -> None:
        if self._dirty_model_state:
            self._rebuild_model_state()
        state = {
            "personal": self._personal.to_dict(),
            "model_version": self._model_version,
            "h": None if self._h is None else self._h.ravel().tolist(),
            "c": None if self._c is None else self._c.ravel().tolist(),
            "interest": None if self._interest is None else self._interest.tolist(),
            "intensity": None if self._intensity is None else self._intensity.tolist(),
        }
        self._store.put_state(_STATE, json.dumps(state).encode())
        self._unsaved = 0

    def flush(self) -> None:
        """Persist the current state now (it is also saved every few events and on close)."""
        with self._lock:
            self._save_state()

    def close(self) -> None:
        with self._lock:
            try:
                self._save_state()
            finally:
                self._store.close()

    def __enter__(self) -> InterestTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- answering ------------------------------------------------------------------------------

    def _model_distribution(self, personal: _Personal, interest: np.ndarray | None) -> dict[str, float]:
        """The softmax over taxonomy names, with ``other``'s mass handed to this person's own
        out-of-taxonomy categories (so rare interests can still be predicted)."""
        if interest is None or self._taxonomy is None:
            return {}
        names = self._taxonomy.names
        dist = {names[i]: float(p) for i, p in enumerate(interest) if i != 0}
        other_mass = float(interest[0])
        recent, shares, _ = personal.distributions()
        own = {c: 0.5 * recent.get(c, 0.0) + 0.5 * s for c, s in shares.items() if c not in self._taxonomy}
        total = sum(own.values())
        if total > 0:
            for cat, w in own.items():
                dist[cat] = dist.get(cat, 0.0) + other_mass * w / total
        return dist

    def _next_distribution(self, personal: _Personal, interest: np.ndarray | None) -> tuple[dict[str, float], str]:
        recent, shares, transitions = personal.distributions()
        model = self._model_distribution(personal, interest)
        mix = self._mix
        parts = [(mix.recent, recent), (mix.profile, shares), (mix.transitions, transitions)]
        if mix.last > 0 and personal.transitions.last:
            last = personal.transitions.last
            parts.append((mix.last, {cat: 1.0 / len(last) for cat in last}))
        if model:
            parts.insert(0, (mix.model, model))
        return _blend(parts), ("model+profile" if model else "profile")

    def _blend_case(self, personal: _Personal, interest: np.ndarray | None, categories: Sequence[str]) -> BlendCase:
        """The five distributions :meth:`_next_distribution` blends, with the next event's categories as targets."""
        recent, shares, transitions = personal.distributions()
        last = personal.transitions.last
        parts = [self._model_distribution(personal, interest), recent, shares, transitions,
                 {cat: 1.0 / len(last) for cat in last} if last else {}]
        return BlendCase.from_dicts(parts, categories)

    def _fresh(self) -> None:
        if self._dirty_model_state:
            self._rebuild_model_state()

    def interests(self, k: int = 5) -> InterestProfile:
        """What the person is into now: the top ``k`` categories with the events behind them.

        Categories are ranked by the shift detector's ``current`` memory (a slow event-decayed mix that
        jumps to the new mix when a shift is reported), blended half and half with the model's
        next-interest distribution when there is a model. ``profile_share`` is the time-decayed share
        (half-life ``half_life_s``) and ``because`` the newest events behind it.
        """
        with self._lock:
            self._fresh()
            shares = self._personal.profile.shares()
            current = self._personal.detector.current
            model = self._model_distribution(self._personal, self._interest)
            scores = _blend([(0.5, current), (0.5, model)]) if model else dict(current)
            top = []
            for cat, score in _ranked({c: s for c, s in scores.items() if c != OTHER or c in current}, k):
                recent = sorted(self._personal.profile.reasons.get(cat, []), key=lambda r: -r.timestamp)
                reasons = tuple({r.item_id: r for r in reversed(recent)}.values())[::-1]
                top.append(CategoryInterest(cat, score, shares.get(cat, 0.0), model.get(cat) if model else None,
                                            reasons))
            return InterestProfile(tuple(top), "model+profile" if model else "profile",
                                   self._personal.profile.count, self._half_life_s)

    def predict(self, k: int = 5) -> Prediction:
        """What comes next: the next-interest distribution and the next-window intensity."""
        with self._lock:
            self._fresh()
            dist, source = self._next_distribution(self._personal, self._interest)
            intensity: list[tuple[str, float]] = []
            if self._intensity is not None and self._taxonomy is not None:
                intensity = _ranked({self._taxonomy.name(i): float(p) for i, p in enumerate(self._intensity)}, k)
            return Prediction(tuple(_ranked(dist, k)), tuple(intensity), source)

    def shifts(self) -> list[Shift]:
        """Detected interest shifts, oldest first."""
        with self._lock:
            return list(self._personal.detector.shifts)

    def recommend(self, candidates: Iterable[Event | Mapping[str, Any]], k: int = 10) -> list[Recommendation]:
        """Rank candidate items by predicted interest in their categories.

        A candidate is an :class:`Event` or a mapping with ``item_id``,
        ``categories`` and optionally ``title``.
        """
        with self._lock:
            self._fresh()
            dist, _ = self._next_distribution(self._personal, self._interest)
            scored = []
            for i, cand in enumerate(candidates):
                item_id, cats = self._candidate(cand, i)
                best = max(cats, key=lambda c: dist.get(c, 0.0))
                score = max(dist.get(c, 0.0) for c in cats)
                reason = (f"you are into {best} ({dist.get(best, 0.0):.0%} of predicted interest)"
                          if score > 0 else "no signal: none of its categories has been seen")
                scored.append(Recommendation(item_id, score, reason))
            scored.sort(key=lambda r: -r.score)
            return scored[:k]

    @staticmethod
    def _candidate(cand: Event | Mapping[str, Any], index: int) -> tuple[str, tuple[str, ...]]:
        if isinstance(cand, Event):
            return cand.item_id, cand.categories
        if not isinstance(cand, Mapping) or not isinstance(cand.get("item_id"), str) or not cand["item_id"]:
            raise EventValidationError(f"candidates[{index}].item_id", cand, "a mapping with a non-empty item_id")
        cats = cand.get("categories") or (OTHER,)
        if isinstance(cats, str):
            cats = (cats,)
        return cand["item_id"], tuple(cats)

    # ---- forgetting and export ------------------------------------------------------------------

    def forget(self, item_id: str | None = None, before: Any = None, everything: bool = False) -> int:
        """Delete events for good and rebuild the state without them."""
        with self._lock:
            removed = self._store.forget(item_id=item_id, before=before, everything=everything)
            self._personal = self._new_personal()
            for seq, ev in self._store.events():
                self._personal.update(seq, ev)
            self._rebuild_model_state()
            self._save_state()
            return removed

    def export(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The person's own data as JSON: events, profile, predictions and shifts."""
        with self._lock:
            self._save_state()
            data = self._store.export(None)
            data["interests"] = self.interests(10).to_dict()
            data["prediction"] = self.predict(10).to_dict()
            data["shifts"] = [s.to_dict() for s in self.shifts()]
            data["model_version"] = self._model_version
            if path is not None:
                target = Path(path)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, ensure_ascii=False, indent=1)
            return data

    # ---- browser history ------------------------------------------------------------------------

    def import_history(self, path: str | os.PathLike[str], browser: str = "auto",
                       rules: str | os.PathLike[str] | None = None,
                       progress: Any = None) -> Any:
        """Import a browser's history file (Chrome, Firefox or Safari) into this tracker.

        The original is never modified. A second import of the same file adds
        only visits newer than the last one imported. Returns the
        :class:`~vane.client.history.ImportSummary`.
        """
        from datetime import datetime

        from vane.client.history import read_history

        cursor_name = "import/" + hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:24]
        with self._lock:
            cursor = self._store.get_state(cursor_name)
            since = datetime.fromisoformat(cursor.decode()) if cursor else None
            batch = read_history(path, browser=browser, since=since, rules=rules, progress=progress)
            seqs = self.record_many(batch.events)
            summary = batch.summary
            duplicates = len(batch.events) - len(seqs)
            if duplicates:
                summary.imported -= duplicates
                summary.skipped["duplicate"] = summary.skipped.get("duplicate", 0) + duplicates
            if batch.last_visit_time is not None:
                self._store.put_state(cursor_name, batch.last_visit_time.isoformat().encode())
            self._save_state()
            return summary

    # ---- models ---------------------------------------------------------------------------------

    @property
    def mix(self) -> Mix:
        """The blend weights in use."""
        return self._mix

    def recommend_mix(self, mix: Mix) -> None:
        """Keep the federation's recommended blend in the store; it is used unless the app passed its own ``mix``."""
        with self._lock:
            encoded = json.dumps(dict(zip(MIX_FIELDS, mix.weights(), strict=True))).encode()
            if self._store.get_state(_MIX) != encoded:  # every round resends it; write only a change
                self._store.put_state(_MIX, encoded)
            if not self._mix_explicit:
                self._mix = mix

    def _persist_model(self, blob: bytes) -> None:
        self._store.put_state(_MODEL, blob)
        self._store.put_state(_MODEL_VERSION, (self._model_version or "").encode())

    def install_model(self, blob: bytes, version: str, taxonomy: Taxonomy | None = None) -> None:
        """Swap in a new model atomically.

        With the same spec and taxonomy the LSTM state carries over; otherwise
        it is rebuilt once from the stored history.
        """
        new = LiteModel.from_bytes(blob)  # fails before anything changes
        tax = taxonomy or self._taxonomy
        if tax is None:
            raise TaxonomyError("install_model needs a taxonomy: pass taxonomy=...")
        featurizer = Featurizer(new.spec, tax)
        with self._lock:
            compatible = (self._model is not None and self._model.spec.hash == new.spec.hash
                          and tax == self._taxonomy)
            self._model, self._featurizer, self._taxonomy = new, featurizer, tax
            self._model_version = version
            self._persist_model(blob)
            self._store.put_state(_TAXONOMY, json.dumps(tax.to_dict()).encode())
            if not compatible:
                self._dirty_model_state = True
            self._save_state()

    def get_weights(self) -> Weights:
        with self._lock:
            return self._require_model().get_weights()

    def set_weights(self, weights: Weights) -> None:
        """Load new weights (e.g. the global model of a federated round); the state is rebuilt lazily."""
        with self._lock:
            self._require_model().set_weights(weights)
            self._store.put_state(_WEIGHTS, weights.to_bytes())
            self._dirty_model_state = True

    def _require_model(self) -> LiteModel:
        if self._model is None:
            raise ConfigError("this tracker has no model: open it with model=... or call install_model()")
        return self._model

    # ---- on-device training and evaluation ------------------------------------------------------

    @staticmethod
    def holdout_size(n: int, fraction: float = 0.1, cap: int = 50) -> int:
        """Newest events kept aside for evaluation: 10% (at least 1, at most ``cap``), none below 10 events."""
        if n < 10:
            return 0
        return max(1, min(cap, int(round(n * fraction))))

    def train_local(self, epochs: int = 1, learning_rate: float | None = None, seed: int = 0,
                    holdout_fraction: float = 0.1) -> TrainResult:
        """Train on this device's history through the LiteRT ``train`` signature.

        The newest events are kept aside (see :meth:`holdout_size`) and never
        trained on. Windows carry the LSTM state of the windows before them.
        """
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs is {epochs!r}; expected an integer >= 1")
        with self._lock:
            model = self._require_model()
            assert self._featurizer is not None
            spec = model.spec
            lr = spec.learning_rate if learning_rate is None else float(learning_rate)
            if not (lr > 0 and math.isfinite(lr)):
                raise ConfigError(f"learning_rate is {learning_rate!r}; expected a positive number")
            events = [ev for _, ev in self._store.events()]
            holdout = self.holdout_size(len(events), holdout_fraction)
            train = events[: len(events) - holdout]
            if len(train) < 2:
                return TrainResult(float("nan"), 0, 0, epochs, holdout)
            feats = self._featurizer.encode(train)
            interest, intensity, valid = self._featurizer.targets(train)
            wf, wi, wn, ww = make_windows(feats, interest, intensity, valid, spec.window)
            rng = np.random.default_rng(seed)
            losses: list[float] = []
            steps = 0
            for _ in range(epochs):
                h0, c0 = self._window_states(wf, ww)
                order = rng.permutation(len(wf.item))
                for start in range(0, len(order), spec.batch):
                    idx = order[start : start + spec.batch]
                    sub = wf.select(idx)
                    batch = pad_batch(sub, wi[idx], wn[idx], ww[idx], spec.batch, spec.lstm_units, h0[idx], c0[idx])
                    losses.append(model.train(batch, lr))
                    steps += 1
            self._store.put_state(_WEIGHTS, model.get_weights().to_bytes())
            self._dirty_model_state = True
            return TrainResult(float(np.mean(losses)), int(np.count_nonzero(ww)), steps, epochs, holdout)

    def _window_states(self, windows: Features, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The LSTM state at the start of each window, carried from the windows before it."""
        model = self._require_model()
        units = model.spec.lstm_units
        n = len(windows.item)
        h0 = np.zeros((n, units), np.float32)
        c0 = np.zeros((n, units), np.float32)
        h = np.zeros((1, units), np.float32)
        c = np.zeros((1, units), np.float32)
        for w in range(n):
            h0[w], c0[w] = h[0], c[0]
            chunk = windows.select(w)
            out = _infer_sequence(model, chunk, h, c)
            h, c = out.h, out.c
        return h0, c0

    def evaluate_local(self, holdout_fraction: float = 0.1, ks: tuple[int, ...] = (1, 5, 10),
                       mix_candidates: Sequence[Sequence[float]] = ()) -> dict[str, float]:
        """Metrics on the held-out newest events, each predicted from everything before it.

        Next-interest: HR@1/5/10, NDCG@10, MRR (``other`` is never a hit).
        Intensity (when a model is present): accuracy, recall, F1, AUC.
        With ``mix_candidates`` (weights in ``MIX_FIELDS`` order, e.g. ``mix_grid(0.25)``), also
        ``mix-{i}-hr@1`` and ``mix-{i}-mrr`` of the blend under candidate ``i``: only these means
        leave the device, from which the server picks the population's best blend.
        """
        with self._lock:
            events = self._store.events()
            holdout = self.holdout_size(len(events), holdout_fraction)
            if holdout == 0:
                return {"num-examples": 0.0}
            personal = self._new_personal()
            cut = len(events) - holdout
            for seq, ev in events[:cut]:
                personal.update(seq, ev)
            plain = [ev for _, ev in events]
            h = c = None
            interest = None
            if self._model is not None and self._featurizer is not None:
                units = self._model.spec.lstm_units
                h, c = np.zeros((1, units), np.float32), np.zeros((1, units), np.float32)
                feats = self._featurizer.encode(plain)
                out = _infer_sequence(self._model, feats.rows(0, cut), h, c)
                h, c, interest, last_intensity = out.h, out.c, out.interest[-1], out.intensity[-1]
                _, target_intensity, _ = self._featurizer.targets(plain)
            acc = RankingAccumulator(ks=ks)
            y_true: list[np.ndarray] = []
            y_score: list[np.ndarray] = []
            cases: list[BlendCase] = []
            for j in range(cut, len(plain)):
                dist, _ = self._next_distribution(personal, interest)
                acc.add_ranked([cat for cat, _ in _ranked(dist)], plain[j].categories)
                if mix_candidates:
                    cases.append(self._blend_case(personal, interest, plain[j].categories))
                if interest is not None:
                    y_true.append(target_intensity[j - 1])
                    y_score.append(last_intensity)
                    step = self._model.step(feats.rows(j, j + 1), h, c)  # type: ignore[union-attr]
                    h, c, interest, last_intensity = step.h, step.c, step.interest, step.intensity
                personal.update(events[j][0], plain[j])
            metrics = {k.lower(): float(v) for k, v in acc.result().items()}
            if y_true:
                report = classification_report(np.stack(y_true), np.stack(y_score))
                metrics.update({"accuracy": report["accuracy"], "recall": report["recall"], "f1": report["f1"],
                                "auc": report["roc_auc"]})
            if mix_candidates:
                ranks = grid_ranks(cases, mix_candidates)
                for i, row in enumerate(ranks):
                    metrics[f"mix-{i}-hr@1"] = float(np.mean(row <= 1))
                    metrics[f"mix-{i}-mrr"] = float(np.mean(1.0 / row))
            metrics["num-examples"] = float(holdout)
            return metrics
