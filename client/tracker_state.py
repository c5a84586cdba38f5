"""``TrackerState``: the state every answer reads, kept in step with the stored events.

It pairs the model-free :class:`~vane.client.personal.PersonalState` with the LSTM's
:class:`~vane.client.model_state.ModelState`. Both are caches of replaying the stored events in
order: the saved copy (``tracker/state``) is written every ``persist_every`` events and on close,
and opening replays the events stored after it, so a crash costs only a short catch-up.

Deleting events (forget, retention) deletes the saved copy in the same store transaction and bumps
the store's :attr:`~vane.client.store.EventStore.generation`; the state is then rebuilt from the
remaining events before anything reads or saves it (:meth:`TrackerState.sync`), so no forgotten id,
title or count survives in memory, in the answers or on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vane.client.model_state import ModelState
from vane.client.persistence import TrackerSlots
from vane.client.personal import PersonalState
from vane.client.store import EventStore
from vane.shared.events import Event, dedupe, is_duplicate

#: Batches longer than this advance the state in one block (chunked ``infer``, a block of the detector).
_BLOCK = 8


class TrackerState:
    """The personal and LSTM state of one tracker, advanced, saved and rebuilt together.

    Parameters
    ----------
    store : EventStore
        The tracker's store: the events to replay, and where the state is saved.
    new_personal : callable
        Makes an empty :class:`PersonalState` with the tracker's settings.
    lstm : ModelState
        The LSTM state (with the model and featurizer; both None without a model).
    model_version : str or None
        The label of the model the LSTM state is computed with (saved with the state).
    """

    def __init__(self, store: EventStore, new_personal: Callable[[], PersonalState], lstm: ModelState,
                 model_version: str | None) -> None:
        self._store = store
        self.model_version = model_version
        self.slots = TrackerSlots(store)
        self._new_personal = new_personal
        self.personal = new_personal()
        self.lstm = lstm
        self.unsaved = 0
        #: Save after this many new events (the saved state is a cache; see the module docstring).
        self.persist_every = 128
        self.generation = store.generation

    def record(self, event: Event) -> int | None:
        """Store ``event`` and take it, unless it is a duplicate of the last kept event (then None).

        The one duplicate rule, :func:`vane.shared.events.is_duplicate`.
        """
        if is_duplicate(event, self.personal.last_event):
            return None
        seq = self._store.append(event)
        self.advance(seq, event)
        self.after_records(1)
        return seq

    def record_many(self, events: Sequence[Event]) -> list[int]:
        """Store and take the events that :func:`vane.shared.events.dedupe` keeps, in one transaction.

        Exactly what :meth:`record` one by one keeps, because both compare with the last kept event.
        """
        kept = dedupe(events, self.personal.last_event)
        seqs = self._store.append_many(kept)
        self.advance_many(list(zip(seqs, kept, strict=True)))
        return seqs

    def advance(self, seq: int, event: Event) -> None:
        """Take one kept event (stored as ``seq``)."""
        previous = self.personal.last_time
        self.personal.update(seq, event)
        self.lstm.step(event, previous)

    def advance_many(self, items: list[tuple[int, Event]]) -> None:
        """Take kept ``(seq, event)`` items in order: the same state as :meth:`advance` for each."""
        if len(items) > _BLOCK and self.lstm.model is None:
            self.personal.update_many(items)
        elif len(items) > _BLOCK and not self.lstm.stale:
            previous = self.personal.last_time
            self.personal.update_many(items)
            self.lstm.run([ev for _, ev in items], previous_time=previous)
        else:
            for seq, ev in items:
                self.advance(seq, ev)
        self.after_records(len(items))

    def after_records(self, n: int) -> None:
        """Count ``n`` new events; save when ``persist_every`` have accumulated."""
        self.unsaved += n
        if self.unsaved >= self.persist_every:
            self.save()

    def sync(self) -> None:
        """Rebuild everything from the stored events if some were deleted since the state was built."""
        if self.generation != self._store.generation:
            self.replay()

    def refresh(self) -> None:
        """Bring the state in line with the store: replay after deletions, rebuild a stale LSTM state."""
        self.sync()
        if self.lstm.stale:
            self.rebuild_model()

    def rebuild_model(self) -> None:
        """Recompute the LSTM state from the whole stored history, once."""
        self.lstm.rebuild([ev for _, ev in self._store.events()] if self.lstm.model is not None else [])

    def replay(self) -> None:
        """Rebuild everything from the stored events (after some were deleted)."""
        self.generation = self._store.generation
        self.personal = self._new_personal()
        stored = self._store.events()
        if stored:
            self.personal.update_many(stored)
        self.lstm.rebuild([ev for _, ev in stored] if self.lstm.model is not None else [])

    def save(self) -> None:
        """Persist the state, labelled with the model version it was computed with."""
        self.refresh()
        state: dict[str, Any] = {"personal": self.personal.to_dict(), "model_version": self.model_version,
                                 "generation": self.generation, **self.lstm.to_dict()}
        self.slots.save_state(state)
        self.unsaved = 0

    def delete(self, deletion: Callable[[], int]) -> int:
        """Run a store deletion (``forget``, ``apply_retention``), then at once rebuild from the remaining
        events, save, and scrub the file of every older copy; returns how many went."""
        removed = deletion()
        self.replay()
        self.save()
        self._store.scrub()
        return removed

    def load(self, fresh_model: bool) -> None:
        """Restore the saved state and catch up on the events stored after it.

        The LSTM part is kept only when it was computed with :attr:`model_version` and the app did not
        pass a new model (``fresh_model``); otherwise it is rebuilt lazily. A state saved before the store's
        last deletion (another :attr:`generation`) is not used at all: everything is replayed.
        """
        state = self.slots.state()
        self.generation = self._store.generation
        if state is not None and state.get("generation") != self.generation:
            state = None  # saved before events were deleted (or by a version without this check): replay all
        if state is not None:
            self.personal = PersonalState.from_dict(state["personal"])
            if self.personal.last_event is None and self.personal.last_seq > 0:
                # Saved before the state kept its last event: read it back from the store.
                found = self._store.events(since_seq=self.personal.last_seq - 1, limit=1)
                if found and found[0][0] == self.personal.last_seq:
                    self.personal.last_event = found[0][1]
            same_model = state.get("model_version") == self.model_version and not fresh_model
            if not (same_model and self.lstm.restore(state)):
                self.lstm.mark_stale()
        behind = self._store.events(since_seq=self.personal.last_seq)
        if behind and self.lstm.h is None:
            self.lstm.mark_stale()
        for seq, event in behind:  # catch up on events stored after the last saved state
            self.advance(seq, event)
        if behind:
            self.save()
