"""``ModelState``: the LSTM's running state over one person's events.

Each kept event advances it in constant time through the LiteRT ``step`` signature, or a batch
through chunked ``infer`` (the same numbers). It is a cache of replaying the stored events: when it
cannot be advanced exactly (new weights, an incompatible model, events forgotten) it is marked
``stale`` and rebuilt once from the whole history before it is read.

A model whose spec has ``text_dim`` also reads each event's text embedding, looked up by the event's
store ``seq`` in ``embeddings`` (the tracker passes its store's sealed embeddings); an event without one,
or a caller that gives no seqs, reads zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
from vane.client.runtime import LiteModel
from vane.shared.candidates import CandidateState
from vane.shared.errors import ConfigError
from vane.shared.events import Event
from vane.shared.features import Featurizer

#: Events featurised and run through ``infer`` at once (rounded to whole windows).
_CHUNK = 1024
#: Looks up stored text embeddings by seq: ``seq -> float32[dims]`` for those that have one.
EmbeddingLookup: TypeAlias = Callable[[Iterable[int]], Mapping[int, np.ndarray]]


class ModelState:
    """The model, its featurizer and the state (h, c) with the latest outputs.

    Attributes
    ----------
    model : LiteModel or None
        The interest model; None for a tracker without a model (then nothing here is used).
    featurizer : Featurizer or None
        Encodes events for ``model``.
    h, c : ndarray or None
        The LSTM state after the last event, (1, U); None before any event.
    interest, intensity : ndarray or None
        The model's next-interest softmax and next-window intensity after the last event, (C,).
    stale : bool
        The state no longer matches the stored events; :meth:`rebuild` before reading it.
    candidates : CandidateState or None
        With a model that has the candidate ranker: the person's candidates and their features, kept in
        step with the events (:mod:`vane.client.ranker`); None otherwise.
    candidates_stale : bool
        Only the candidate state must be rebuilt (a saved state restored: it is not saved).
    embeddings : callable or None
        The stored text embeddings by seq (for a model with ``text_dim``).
    """

    def __init__(self, model: LiteModel | None, featurizer: Featurizer | None,
                 embeddings: EmbeddingLookup | None = None) -> None:
        self.model = model
        self.featurizer = featurizer
        self.embeddings = embeddings
        self.h: np.ndarray | None = None
        self.c: np.ndarray | None = None
        self.interest: np.ndarray | None = None
        self.intensity: np.ndarray | None = None
        self.stale = False
        self.candidates: CandidateState | None = None
        self.candidates_stale = bool(model is not None and model.has_ranker)

    def require_model(self) -> LiteModel:
        """The model; raises :class:`ConfigError` when there is none."""
        if self.model is None:
            raise ConfigError("this tracker has no model: open it with model=... or call install_model()")
        return self.model

    def install(self, model: LiteModel, featurizer: Featurizer, same_taxonomy: bool) -> None:
        """Swap in ``model``; the state carries over only with the same spec and taxonomy, else it is stale."""
        compatible = self.model is not None and self.model.spec.hash == model.spec.hash and same_taxonomy
        self.model, self.featurizer = model, featurizer
        if not compatible:
            self.mark_stale()
        elif model.has_ranker and self.candidates is None:
            self.candidates_stale = True

    def release(self) -> None:
        """Free the model's interpreter (the tracker closed); the cached outputs stay readable."""
        if self.model is not None:
            self.model.release()

    def mark_stale(self) -> None:
        """The state must be rebuilt (no-op without a model)."""
        if self.model is not None:
            self.stale = True

    def texts(self, seqs: Sequence[int] | None) -> np.ndarray | None:
        """The text embeddings of the events ``seqs`` as ``(N, text_dim)`` rows, zeros where an event has none
        (or one of another width); None when the model reads no text, or without seqs or a lookup."""
        spec = None if self.model is None else self.model.spec
        if spec is None or not spec.text_dim or seqs is None or self.embeddings is None:
            return None
        found = self.embeddings(seqs)
        out = np.zeros((len(seqs), spec.text_dim), np.float32)
        for i, seq in enumerate(seqs):
            vector = found.get(seq)
            if vector is not None and vector.shape == (spec.text_dim,):
                out[i] = vector
        return out

    def step(self, event: Event, previous_time: float | None, seq: int | None = None) -> None:
        """Advance through one event (``previous_time``: Unix time of the event before it; ``seq``: its store seq)."""
        if self.model is None or self.featurizer is None or self.stale:
            self.mark_stale()
            return
        feats = self.featurizer.encode([event], previous_time, self.texts(None if seq is None else [seq]))
        h, c = self._state()
        out = self.model.step(feats, h, c)
        self.interest, self.intensity, self.h, self.c = out.interest, out.intensity, out.h, out.c
        if self.candidates is not None and not self.candidates_stale:
            self.candidates.observe(event)

    def run(self, events: Sequence[Event], previous_time: float | None = None,
            seqs: Sequence[int] | None = None) -> None:
        """Advance through many events (their store ``seqs``) with chunked ``infer`` (identical to :meth:`step`)."""
        if self.model is None or self.featurizer is None or self.stale:
            self.mark_stale()
            return
        if not events:
            return
        # Whole windows at a time (the same numbers as one call), so a long history never holds all its
        # features and (N x C) outputs at once; the last rows are copied, not views that keep them alive.
        h, c = self._state()
        size = self.model.spec.window * max(1, _CHUNK // self.model.spec.window)
        for start in range(0, len(events), size):
            prev = previous_time if start == 0 else events[start - 1].unix_time
            texts = self.texts(None if seqs is None else seqs[start:start + size])
            out = self.model.infer_sequence(self.featurizer.encode(list(events[start:start + size]), prev, texts), h, c)
            h, c, interest, intensity = out.h, out.c, out.interest[-1].copy(), out.intensity[-1].copy()
        self.h, self.c, self.interest, self.intensity = h, c, interest, intensity
        if self.candidates is not None and not self.candidates_stale:
            for event in events:
                self.candidates.observe(event)

    def rebuild_candidates(self, events: Sequence[Event]) -> None:
        """Recompute only the candidate state from the whole history ``events``."""
        self.candidates_stale = False
        if self.model is None or not self.model.has_ranker:
            self.candidates = None
            return
        self.candidates = state = CandidateState()
        for event in events:
            state.observe(event)

    def rebuild(self, events: Sequence[Event], seqs: Sequence[int] | None = None) -> None:
        """Recompute the state from the whole history ``events`` (their store ``seqs``), once."""
        self.h = self.c = self.interest = self.intensity = None
        self.stale = False
        self.candidates = CandidateState() if self.model is not None and self.model.has_ranker else None
        self.candidates_stale = False
        if self.model is None or self.featurizer is None:
            return
        self.h, self.c = self.model.zero_state(1)
        self.run(events, seqs=seqs)

    def _state(self) -> tuple[np.ndarray, np.ndarray]:
        if self.h is None or self.c is None:
            assert self.model is not None
            self.h, self.c = self.model.zero_state(1)
        return self.h, self.c

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (the keys of the tracker's saved state)."""
        return {
            "h": None if self.h is None else self.h.ravel().tolist(),
            "c": None if self.c is None else self.c.ravel().tolist(),
            "interest": None if self.interest is None else self.interest.tolist(),
            "intensity": None if self.intensity is None else self.intensity.tolist(),
        }

    def restore(self, state: Mapping[str, Any]) -> bool:
        """Load :meth:`to_dict`'s output; False (and nothing loaded) when it holds no full state.

        A state saved with no events behind it (all forgotten) has ``h`` but no ``interest``: it is not
        loaded, and the state is rebuilt (as empty) instead.
        """
        if self.model is None or any(state.get(key) is None for key in ("h", "c", "interest", "intensity")):
            return False
        h = np.asarray(state["h"], np.float32).reshape(1, -1)
        c = np.asarray(state["c"], np.float32).reshape(1, -1)
        interest = np.asarray(state["interest"], np.float32)
        intensity = np.asarray(state["intensity"], np.float32)
        if h.shape != c.shape or interest.ndim != 1 or intensity.ndim != 1:
            return False
        self.h, self.c, self.interest, self.intensity = h, c, interest, intensity
        return True
