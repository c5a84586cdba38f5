"""``InterestTracker``: the SDK an app embeds.

One tracker owns one encrypted :class:`~vane.client.store.EventStore` (and, while open, its file). Each
recorded event is validated, sealed into the store, featurised and pushed through the LiteRT ``step`` signature,
so the LSTM state advances in constant time per event. The answers (:meth:`interests`, :meth:`predict`,
:meth:`shifts`, :meth:`recommend`) read that cached state.

Rules for missing and duplicate data
    - An event missing ``item_id``, ``timestamp`` or ``kind`` is rejected.
    - A missing category maps to ``other``; a missing ``dwell_s`` stays unknown.
    - An event repeating its kept predecessor *in time* within 1 s is a duplicate (one rule, ``is_duplicate``,
      for :meth:`record`, :meth:`record_many`, imports): not stored, :meth:`record` returns ``None``.
    - Answers follow event time, not arrival: an older event is inserted in its place (:mod:`.tracker_state`).
      ``store.events()`` and :meth:`export` list events by ``seq``: *insertion* order.

Without a model the answers come from the decayed profile, a short-memory profile and the person's transitions
(``source="profile"``).

The pieces, one concern each: :mod:`~vane.client.tracker_state` (the personal and LSTM state kept in step with
the store, also after forget and retention), :mod:`~vane.client.predictor` (the blended answers, ``Mix``),
:mod:`~vane.client.training` (on-device training and local evaluation) and :mod:`~vane.client.persistence`
(what the store keeps besides events).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from vane.client.answers import Prediction, Recommendation
from vane.client.blocks import TrackerBlockMethods, unblocked_candidates
from vane.client.embeddings import EmbeddingEventStore, EncoderSource, embedding_store
from vane.client.files import write_export
from vane.client.levels import answer_width, check_level, interests_at, prediction_at, shifts_at
from vane.client.model_state import ModelState
from vane.client.persistence import ModelSource, TaxonomySource, TrackerSlots, choose_model
from vane.client.personal import PersonalState
from vane.client.predictor import Candidate, Mix, NextInterestPredictor
from vane.client.profile import InterestProfile
from vane.client.retention import to_unix
from vane.client.runtime import LiteModel
from vane.client.shifts import Shift
from vane.client.store import EventStore
from vane.client.tracker_models import TrackerModelMethods
from vane.client.tracker_state import TrackerState
from vane.client.training import TrainResult
from vane.shared.errors import ConfigError, EventValidationError
from vane.shared.events import DUPLICATE_WINDOW_S, Event, check_not_future
from vane.shared.features import Featurizer
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy

if TYPE_CHECKING:
    import numpy as np
    from vane.client.history import ImportSummary

__all__ = ["DUPLICATE_WINDOW_S", "InterestTracker", "Mix", "Prediction", "Recommendation", "TrainResult"]

def _as_event(event: Event | Mapping[str, Any]) -> Event:
    if isinstance(event, Event):
        return check_not_future(event)
    if isinstance(event, Mapping):
        return check_not_future(Event.from_dict(event))
    raise EventValidationError("event", event, "an Event or a mapping of event fields")


class InterestTracker(TrackerModelMethods, TrackerBlockMethods):
    """Tracks one person's interests on their device. Open one with :meth:`open`; safe from several threads."""

    def __init__(self, store: EventStore, taxonomy: Taxonomy | None, model: LiteModel | None,
                 model_version: str | None, half_life_s: float, mix: Mix,
                 detector_config: Mapping[str, float]) -> None:
        self._store = store
        self._taxonomy = taxonomy
        self._half_life_s = half_life_s
        self._mix = mix
        self._mix_explicit = True
        self._detector_config = dict(detector_config)
        self._lock = threading.RLock()
        featurizer = Featurizer(model.spec, taxonomy) if model is not None and taxonomy is not None else None
        self._lstm = ModelState(model, featurizer, getattr(store, "embeddings", None))  # text for text_dim models
        # A partial, not the bound new_personal_state: no cycle keeps a closed tracker (and its arrays) alive.
        self._state = TrackerState(store, partial(PersonalState.new, half_life_s, self._detector_config),
                                   self._lstm, model_version)

    # ---- opening --------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        key_file: str | os.PathLike[str] | None = None,
        passphrase: str | bytes | None = None,
        key: bytes | None = None,
        model: ModelSource | None = None,
        taxonomy: TaxonomySource | None = None,
        model_version: str | None = None,
        half_life_days: float = 7.0,
        mix: Mix | None = None,
        shift_detector: Mapping[str, float] | None = None,
        encoder: EncoderSource | None = None,
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
            A model artifact from ``vane server export-model`` (it carries its spec and taxonomy), or a
            bare ``.tflite``. When omitted the model last installed in this store is used, if any.
        taxonomy : Taxonomy or path, optional
            The vocabulary of a bare ``.tflite`` (unless the store holds one); with an artifact, the
            device's taxonomy: an artifact for another one raises TaxonomyError naming both hashes.
        model_version : str, optional
            A label for ``model``, kept in the store.
        half_life_days : float, default 7
            Half-life of the decayed interest profile.
        mix : Mix, optional
            How "what comes next" blends its sources. When omitted, the mix the federation last
            recommended to this store (:meth:`recommend_mix`), else the defaults of :class:`Mix`.
        encoder : bytes or path, optional
            A text encoder (``vane server export-encoder``): every titled event is then embedded once
            and sealed with it (:mod:`vane.client.embeddings`). When omitted, the one the store keeps, if any.
        """
        if not (isinstance(half_life_days, (int, float)) and half_life_days > 0 and math.isfinite(half_life_days)):
            raise ConfigError(f"half_life_days is {half_life_days!r}; expected a positive number of days")
        store = EmbeddingEventStore.open(path, key_file=key_file, passphrase=passphrase, key=key, **store_options)
        try:
            store.load_encoder(encoder)
            slots = TrackerSlots(store)
            lite, blob, model_version, tax = choose_model(slots, model, taxonomy, model_version)
            tracker = cls(store, tax, lite, model_version, half_life_days * 86400.0, mix or slots.mix() or Mix(),
                          shift_detector or {})
            tracker._mix_explicit = mix is not None
            if tax is not None and (taxonomy is not None or model is not None):
                slots.save_taxonomy(tax)
            if model is not None and blob is not None:
                slots.save_model(blob, model_version)
            tracker._state.load(fresh_model=model is not None)
            return tracker
        except BaseException:
            store.close()
            raise

    def new_personal_state(self) -> PersonalState:
        """An empty :class:`PersonalState` with this tracker's settings; replay events into it and ask
        :attr:`predictor` about it for the answers the tracker would have given then (as the evaluation does)."""
        return PersonalState.new(self._half_life_s, self._detector_config)

    # ---- properties -----------------------------------------------------------------------------
    @property
    def store(self) -> EventStore:
        """The encrypted event store."""
        return self._store

    @property
    def taxonomy(self) -> Taxonomy | None:
        """The model's category vocabulary (None without one)."""
        return self._taxonomy

    @property
    def model_version(self) -> str | None:
        """The label of the model in use."""
        return self._state.model_version

    @property
    def has_model(self) -> bool:
        """Whether answers use the LSTM (else they say ``source="profile"``)."""
        return self._lstm.model is not None

    @property
    def spec(self) -> ModelSpec | None:
        """The model's hyperparameters (None without a model)."""
        return self._lstm.model.spec if self._lstm.model is not None else None

    @property
    def model(self) -> LiteModel | None:
        """The interest model in use (its LiteRT interpreter), None without one."""
        return self._lstm.model

    @property
    def featurizer(self) -> Featurizer | None:
        """Encodes events for :attr:`model` (None without a model)."""
        return self._lstm.featurizer

    @property
    def model_state(self) -> ModelState:
        """The LSTM state after the last recorded event (read it after :meth:`refresh`)."""
        return self._lstm

    @property
    def personal_state(self) -> PersonalState:
        """This person's model-free state after the newest event in time (do not modify it)."""
        with self._lock:
            self._state.sync()
            return self._state.personal

    @property
    def persist_every(self) -> int:
        """The state is saved after this many new events (and on close); a cache, see :mod:`.tracker_state`."""
        return self._state.persist_every

    @persist_every.setter
    def persist_every(self, n: int) -> None:
        self._state.persist_every = n

    @property
    def predictor(self) -> NextInterestPredictor:
        """The next-interest predictor with this tracker's taxonomy and :attr:`mix`."""
        return NextInterestPredictor(self._taxonomy, self._mix)

    # ---- recording ------------------------------------------------------------------------------
    def record(self, event: Event | Mapping[str, Any]) -> int | None:
        """Validate, store and learn from one event: its sequence number, or None for a duplicate of the last kept."""
        with self._lock:
            return self._state.record(_as_event(event))

    def record_many(self, events: Iterable[Event | Mapping[str, Any]]) -> list[int]:
        """Record a batch all-or-nothing: one bad event stores none of them.

        Duplicates are dropped by the same rule as :meth:`record` (against the last kept event,
        in the batch or before it), so a batch stores exactly what recording one by one stores.
        """
        batch = [_as_event(e) for e in events]
        with self._lock:
            return self._state.record_many(batch)

    def refresh(self) -> None:
        """Bring the LSTM state up to date now if it is stale (new weights, a new model); answers do this lazily."""
        with self._lock:
            self._state.refresh()

    def flush(self) -> None:
        """Persist the current state now (it is also saved every few events and on close)."""
        with self._lock:
            self._state.save()

    def close(self) -> None:
        """Save the state, close the store and free the model's interpreter (cached answers stay readable)."""
        with self._lock:
            try:
                self._state.save()
            finally:
                self._store.close()
                self._lstm.release()

    def __enter__(self) -> InterestTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- answering ------------------------------------------------------------------------------
    def interests(self, k: int = 5, level: str = "full") -> InterestProfile:
        """What the person is into now: the top ``k`` categories with the events behind them.

        See :meth:`NextInterestPredictor.interests` for how they are ranked; ``level="top"`` rolls them
        up to the top-level topics (:mod:`vane.client.levels`).
        """
        level = check_level(level)
        with self._lock:
            self.refresh()
            blocked = self.blocked()  # never a blocked topic (vane.client.blocks)
            found = self.predictor.interests(self._state.personal, self._lstm.interest,
                                             answer_width(k, blocked, level), self._half_life_s, self.ranked_now())
            return interests_at(found, blocked, k, level)

    def predict(self, k: int = 5, at: Any = None, level: str = "full") -> Prediction:
        """What comes next: the next-interest distribution and the next-window intensity.

        With a model that has the candidate ranker, both come from it, asked at time ``at`` (default:
        now; a datetime or Unix seconds), with the reasons of each top category. ``level="top"``: see
        :mod:`vane.client.levels`.
        """
        level = check_level(level)
        with self._lock:
            self.refresh()
            blocked = self.blocked()
            width = answer_width(k, blocked, level)
            ranker = self.ranked_now(None if at is None else to_unix(at, "at"), explain=k + len(blocked))
            found = self.predictor.predict(self._state.personal, self._lstm.interest, self._lstm.intensity,
                                           width, ranker)
            return prediction_at(found, blocked, k, level)

    def shifts(self, level: str = "full") -> list[Shift]:
        """Detected interest shifts, oldest first (``level="top"``: between top-level topics, :mod:`.levels`)."""
        level = check_level(level)
        with self._lock:
            self._state.sync()
            return shifts_at(self._state, self._detector_config, level,
                             lambda: list(self._state.personal.detector.shifts))

    def recommend(self, candidates: Iterable[Candidate], k: int = 10) -> list[Recommendation]:
        """Rank candidate items by predicted interest in their categories.

        A candidate is an :class:`Event` or a mapping with ``item_id``,
        ``categories`` and optionally ``title``.
        """
        with self._lock:
            self.refresh()
            allowed = unblocked_candidates(candidates, self.blocked())  # all-blocked candidates are dropped
            return self.predictor.recommend(self._state.personal, self._lstm.interest, allowed, k, self.ranked_now())

    # ---- text embeddings (vane.client.embeddings) -----------------------------------------------
    def install_encoder(self, encoder: EncoderSource) -> str:
        """Embed each titled event stored from now on with this text encoder (kept in the store); its version."""
        with self._lock:
            return embedding_store(self._store).install_encoder(encoder)

    def embedding(self, seq: int) -> np.ndarray | None:
        """The sealed embedding (float32) of the event ``seq``, or None when it has none."""
        with self._lock:
            return embedding_store(self._store).embeddings([seq]).get(int(seq))

    # ---- forgetting and export ------------------------------------------------------------------
    def forget(self, item_id: str | None = None, before: Any = None, everything: bool = False) -> int:
        """Delete events for good and rebuild the state at once: gone from events, answers, exports and disk."""
        with self._lock:
            return self._state.delete(lambda: self._store.forget(item_id, before, everything))

    def apply_retention(self, max_age_days: float | None = None, max_events: int | None = None, now: Any = None) -> int:
        """Delete events older than ``max_age_days`` and all but the newest ``max_events`` (by event time),
        rebuilding the state at once as :meth:`forget` does. Returns how many went."""
        with self._lock:
            return self._state.delete(lambda: self._store.apply_retention(max_age_days, max_events, now))

    def export(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The person's own data as JSON: events (in insertion order, by ``seq``), profile, predictions, shifts."""
        with self._lock:
            self._state.save()
            data = self._store.export(None)
            data["interests"] = self.interests(10).to_dict()
            data["prediction"] = self.predict(10).to_dict()
            data["shifts"] = [s.to_dict() for s in self.shifts()]
            data["model_version"] = self._state.model_version
            if path is not None:
                write_export(path, json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"), self._store.path)
            return data

    def correct(self, seq_or_item: int | str, topics: Iterable[Any]) -> Any:
        """Correct an event's Topics (by seq, item id or URL): kept sealed, it beats every source of the
        categoriser and becomes a label (:func:`vane.client.categorize_store.correct`)."""
        from vane.client.categorize_store import correct

        with self._lock:
            return correct(self._store, seq_or_item, topics)

    # ---- browser history ------------------------------------------------------------------------
    def import_history(self, path: str | os.PathLike[str], browser: str = "auto",
                       rules: str | os.PathLike[str] | None = None,
                       progress: Callable[[int, int], None] | None = None) -> ImportSummary:
        """Import a browser's history file (Chrome, Firefox or Safari) into this tracker.

        The original is never modified. A second import of the same file adds
        only visits newer than the last one imported. Returns the
        :class:`~vane.client.history.ImportSummary`.
        """
        from vane.client.history import import_into

        with self._lock:
            return import_into(self._state, path, browser, rules, progress)
