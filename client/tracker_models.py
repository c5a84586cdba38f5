"""The model side of :class:`~vane.client.tracker.InterestTracker`: installing a model, its weights,
on-device training and local evaluation. A mixin, so the tracker's public surface stays in one class."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from vane.client.blocks import stored_blocks, trainable_events
from vane.client.model_state import ModelState
from vane.client.predictor import Mix
from vane.client.ranker import RankedCandidates, population_of, rank_now, train_ranker_local, training_population
from vane.client.runtime import LiteModel
from vane.client.training import TrainResult, evaluate_local, holdout_size, train_local
from vane.shared.errors import ConfigError, TaxonomyError
from vane.shared.features import Featurizer
from vane.shared.population import PopulationStats
from vane.shared.protocol import TRAIN_PARTS
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

if TYPE_CHECKING:
    from vane.client.personal import PersonalState
    from vane.client.predictor import NextInterestPredictor
    from vane.client.tracker_state import TrackerState


class TrackerModelMethods:
    """Model installation, weights and training of a tracker (mixed into ``InterestTracker``)."""

    _lock: threading.RLock
    _lstm: ModelState
    _state: TrackerState
    _taxonomy: Taxonomy | None
    _mix: Mix
    _mix_explicit: bool

    # ---- the candidate ranker (vane.client.ranker) ----------------------------------------------
    def ranked_now(self, at: float | None = None, explain: int = 0) -> RankedCandidates | None:
        """The candidate ranker's answer at Unix time ``at`` (default: now), with reasons for the best
        ``explain`` candidates; None without a ranker or before any event. Call under the lock, refreshed."""
        model = self._lstm.model
        state = self._lstm.candidates
        if model is None or not model.has_ranker or state is None or not state.events:
            return None
        return rank_now(model, state, self.population_stats(), time.time() if at is None else float(at), explain)

    def population_stats(self) -> PopulationStats:
        """The population statistics kept in the store (shipped with the model), parsed once per artifact."""
        blob = self._state.slots.population()
        key = (hash(blob), self._taxonomy)
        cached = getattr(self, "_population_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, population_of(blob, self._taxonomy))
            self._population_cache = cached
        return cached[1]

    def new_personal_state(self) -> PersonalState:  # defined by InterestTracker
        raise NotImplementedError

    @property
    def predictor(self) -> NextInterestPredictor:  # defined by InterestTracker
        raise NotImplementedError

    # ---- models ---------------------------------------------------------------------------------
    @property
    def mix(self) -> Mix:
        """The blend weights in use."""
        return self._mix

    def recommend_mix(self, mix: Mix) -> None:
        """Keep the federation's recommended blend in the store; it is used unless the app passed its own ``mix``."""
        with self._lock:
            self._state.slots.save_mix(mix)
            if not self._mix_explicit:
                self._mix = mix

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
            self._lstm.install(new, featurizer, same_taxonomy=tax == self._taxonomy)
            self._taxonomy, self._state.model_version = tax, version
            self._state.slots.save_model(blob, version)
            self._state.slots.save_taxonomy(tax)
            self._state.save()

    def get_weights(self) -> Weights:
        """The model's current weights (raises ConfigError without a model)."""
        with self._lock:
            return self._lstm.require_model().get_weights()

    def set_weights(self, weights: Weights) -> None:
        """Load new weights (e.g. the global model of a federated round); the state is rebuilt lazily."""
        with self._lock:
            self._lstm.require_model().set_weights(weights)
            self._state.slots.save_weights(weights)
            self._lstm.mark_stale()

    # ---- on-device training and evaluation ------------------------------------------------------
    @staticmethod
    def holdout_size(n: int, fraction: float = 0.1, cap: int = 50) -> int:
        """Newest events kept aside for evaluation (:func:`vane.client.training.holdout_size`)."""
        return holdout_size(n, fraction, cap)

    def train_local(self, epochs: int = 1, learning_rate: float | None = None, seed: int = 0,
                    holdout_fraction: float = 0.1, parts: str = "all") -> TrainResult:
        """Train on this device's history through the LiteRT ``train`` (and ``train_ranker``) signatures.

        The newest events are kept aside (see :meth:`holdout_size`) and never
        trained on. Windows carry the LSTM state of the windows before them.
        ``parts`` picks what trains: ``"all"``, ``"lstm"`` or ``"ranker"`` (the candidate ranker, when the
        model has one, on the kept population statistics less this device's own counts).
        """
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs is {epochs!r}; expected an integer >= 1")
        if parts not in TRAIN_PARTS:
            raise ConfigError(f"parts is {parts!r}; expected one of {', '.join(TRAIN_PARTS)}")
        with self._lock:
            model = self._lstm.require_model()
            assert self._lstm.featurizer is not None
            items = self._state.time_ordered()
            stored = [ev for _, ev in items]
            # Events whose categories are all blocked are never trained on (vane.client.blocks).
            events = trainable_events(stored, stored_blocks(self._state.slots.store))
            seq_of = {id(ev): seq for seq, ev in items}  # (the same Event objects: their store seqs, for text)
            result = TrainResult(float("nan"), 0, 0, epochs, holdout_size(len(events), holdout_fraction))
            if parts in ("all", "lstm"):
                result = train_local(model, self._lstm.featurizer, events, epochs, learning_rate, seed,
                                     holdout_fraction, self._lstm.texts([seq_of[id(ev)] for ev in events]))
            if parts in ("all", "ranker") and model.has_ranker:
                # less its own contribution: the events it counted (all but the blocked, vane.client.population)
                stats = training_population(self._state.slots.population(), self._taxonomy, events)
                ranked = train_ranker_local(model, events, stats, epochs, learning_rate or model.spec.learning_rate,
                                            seed, result.holdout)
                result = (TrainResult(ranked.loss, ranked.num_examples, ranked.steps, epochs, result.holdout)
                          if parts == "ranker" else replace(result, steps=result.steps + ranked.steps))
            if result.steps:
                self._state.slots.save_weights(model.get_weights())
                self._lstm.mark_stale()
            return result

    def evaluate_local(self, holdout_fraction: float = 0.1, ks: tuple[int, ...] = (1, 5, 10),
                       mix_candidates: Sequence[Sequence[float]] = ()) -> dict[str, float]:
        """Metrics on the held-out newest events, each predicted from everything before it.

        See :func:`vane.client.training.evaluate_local` for the metrics, and ``mix_candidates``.
        """
        with self._lock:
            items = self._state.time_ordered()
            return evaluate_local(items, self.new_personal_state, self.predictor, self._lstm.model,
                                  self._lstm.featurizer, holdout_fraction, ks, mix_candidates,
                                  self._lstm.texts([seq for seq, _ in items]))
