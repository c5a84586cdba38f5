"""``TrackerState``: the state every answer reads, kept in step with the stored events.

It pairs the model-free :class:`~vane.client.personal.PersonalState` with the LSTM's
:class:`~vane.client.model_state.ModelState`. Both are caches of replaying the stored events **in
event time**, whatever order they arrived in: sorted by :func:`time_key` (timestamp, then item id
and the rest of the event, then ``seq`` only between identical events), with the one duplicate rule
(:func:`vane.shared.events.is_duplicate`) applied over that time-sorted sequence. So the answers
(interests, predictions, shifts, the LSTM state) do not depend on import or arrival order.

- An event newer than every stored one (the usual case) advances the state in O(1) (``step``), as
  before; it is a duplicate when it repeats the last *kept* event's item within the window.
- An older event (a history imported after newer ones, a late event) is inserted in its place: it is
  a duplicate when it repeats its kept predecessor in time; otherwise it is stored (with the next
  insertion ``seq``) and the state is rebuilt from the time-sorted events, lazily, once, before the
  next answer or save. An import of an older history therefore costs one read of the store and one
  replay, not one per batch. (Replaying only from the insertion point would need a saved state at
  that point in time, which the tracker does not keep.) A late event may make a stored later event a
  duplicate of it (a reload within the window): that event stays stored but is skipped by the
  replay, as if it had arrived in order. The one case that still depends on order is a burst of one
  item within the duplicate window whose middle visit arrived first (the stored set differs; see
  :meth:`TrackerState.record_many`).

The saved copy (``tracker/state``) is written every ``persist_every`` events and on close, and
opening catches up on the events stored after it (``covered_seq``), so a crash costs only a short
catch-up; a state saved in arrival order (before ``"format": 2``) is replayed once.

Deleting events (forget, retention) deletes the saved copy in the same store transaction and bumps
the store's :attr:`~vane.client.store.EventStore.generation`; the state is then rebuilt from the
remaining events before anything reads or saves it (:meth:`TrackerState.sync`), so no forgotten id,
title or count survives in memory, in the answers or on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from typing import Any

from vane.client.model_state import ModelState
from vane.client.persistence import TrackerSlots
from vane.client.personal import PersonalState, event_key, time_key
from vane.client.store import EventStore
from vane.shared.events import Event, dedupe, is_duplicate

#: Batches longer than this advance the state in one block (chunked ``infer``, a block of the detector).
_BLOCK = 8
#: Placeholder ``seq`` of events not stored yet: after every stored one with the same event key.
_UNSTORED = 1 << 62
#: The saved state's format: 2 is event-time order with per-category counts; any other is replayed.
FORMAT = 2

#: One stored event in the time-sorted timeline: ``(time_key, seq, event)``.
Entry = tuple[tuple[Any, ...], int, Event]


def kept_in_time_order(entries: Iterable[Entry], last: Event | None = None) -> list[tuple[int, Event]]:
    """The ``(seq, event)`` of time-sorted ``entries`` that the duplicate rule keeps after ``last`` (the last kept)."""
    out: list[tuple[int, Event]] = []
    for _, seq, event in entries:
        if is_duplicate(event, last):
            continue
        out.append((seq, event))
        last = event
    return out


def _timeline(stored: Iterable[tuple[int, Event]]) -> list[Entry]:
    return sorted((time_key(seq, ev), seq, ev) for seq, ev in stored)


def _time_order(batch: list[Event]) -> Sequence[int]:
    """The positions of ``batch`` in time order (a stable sort by :func:`event_key`); a ``range`` when the
    batch is in order already, so no key of every event is held."""
    previous = None
    for event in batch:
        key = event_key(event)
        if previous is not None and key < previous:
            return sorted(range(len(batch)), key=lambda i: event_key(batch[i]))
        previous = key
    return range(len(batch))


def time_ordered(store: EventStore) -> list[tuple[int, Event]]:
    """The events of ``store`` a tracker's state is built from: time-sorted, duplicates (in time) left out."""
    return kept_in_time_order(_timeline(store.events()))


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
        #: The highest store ``seq`` the state has taken into account.
        self.covered_seq = 0
        #: While not None, the time-sorted stored events the state must be replayed from (late events came).
        self._pending: list[Entry] | None = None

    # ---- recording ------------------------------------------------------------------------------
    def _newest(self) -> Event | None:
        return self._pending[-1][2] if self._pending else self.personal.newest

    def _in_order(self, first: Event) -> bool:
        newest = self._newest()
        return newest is None or event_key(first) >= event_key(newest)

    def record(self, event: Event) -> int | None:
        """Store ``event`` and take it, unless it is a duplicate of the kept event before it in time (then None).

        The one duplicate rule, :func:`vane.shared.events.is_duplicate`.
        """
        if not self._in_order(event):
            seqs = self._insert([event], [0])
            return seqs[0] if seqs else None
        self.sync()
        if is_duplicate(event, self.personal.last_event):
            return None
        seq = self._store.append(event)
        self.advance(seq, event)
        self.after_records(1)
        return seq

    def record_many(self, events: Sequence[Event]) -> list[int]:
        """Store and take the events the duplicate rule keeps, in one transaction; returns their seqs.

        The events are stored in the order given (their ``seq``) and taken in time order (sorted by
        :func:`event_key`), so a batch keeps exactly what :meth:`record` one by one keeps for events
        arriving in time order; events older than the newest stored one are inserted in their place
        (see the module docstring). The duplicate rule drops an event that repeats its kept
        predecessor in time; an event dropped is never stored, so a burst ``a@0, a@0.5, a@1.2`` keeps
        ``0`` and ``1.2`` when it arrives in order or backwards, but only ``0.5`` when ``0.5`` arrived
        alone first (``1.2`` was then its duplicate and is gone).
        """
        batch = list(events)
        if not batch:
            return []
        order = _time_order(batch)
        if not self._in_order(batch[order[0]]):
            return self._insert(batch, order)
        self.sync()
        kept = iter(dedupe([batch[i] for i in order], self.personal.last_event))
        # dedupe keeps a subsequence of the time-sorted batch: walk both to find the kept positions.
        kept_at, want = [], next(kept, None)
        for i in order:
            if batch[i] is want:
                kept_at.append(i)
                want = next(kept, None)
        seqs, items = self._store_kept(batch, kept_at)
        self.advance_many(items)
        return seqs

    def _store_kept(self, batch: list[Event], kept_at: list[int]) -> tuple[list[int], list[tuple[int, Event]]]:
        """Store ``batch[i]`` for the positions ``kept_at`` (in time order) in batch order; their seqs, and
        the kept ``(seq, event)`` in time order."""
        stored = sorted(kept_at)
        seqs = self._store.append_many([batch[i] for i in stored])
        if stored == kept_at:  # (a batch in time order: no map needed)
            return seqs, list(zip(seqs, (batch[i] for i in kept_at), strict=True))
        seq_at = dict(zip(stored, seqs, strict=True))
        return seqs, [(seq_at[i], batch[i]) for i in kept_at]

    def _insert(self, batch: list[Event], order: Sequence[int]) -> list[int]:
        """Store the events of ``batch`` (``order``: their positions in time order) that are kept in their
        place in time; replay lazily."""
        if self._pending is None or self.generation != self._store.generation:
            self._pending = None  # (events deleted through the store since: read the timeline again)
            self.sync()
            self._pending = _timeline(self._store.events())
        new = [(time_key(_UNSTORED + j, batch[i]), _UNSTORED + j, batch[i]) for j, i in enumerate(order)]
        merged = sorted(self._pending + new)
        del new
        kept_at = [order[seq - _UNSTORED] for seq, _ in kept_in_time_order(merged) if seq >= _UNSTORED]
        del merged
        seqs, items = self._store_kept(batch, kept_at)
        timeline = self._pending + [(time_key(seq, ev), seq, ev) for seq, ev in items]
        timeline.sort()
        self._pending = timeline
        return seqs

    def advance(self, seq: int, event: Event) -> None:
        """Take one kept event (stored as ``seq``), newer than every event taken before."""
        previous = self.personal.last_time
        self.personal.update(seq, event)
        self.lstm.step(event, previous, seq)
        self.covered_seq = max(self.covered_seq, seq)

    def advance_many(self, items: list[tuple[int, Event]]) -> None:
        """Take kept ``(seq, event)`` items in order: the same state as :meth:`advance` for each."""
        if len(items) > _BLOCK and self.lstm.model is None:
            self.personal.update_many(items)
        elif len(items) > _BLOCK and not self.lstm.stale:
            previous = self.personal.last_time
            self.personal.update_many(items)
            self.lstm.run([ev for _, ev in items], previous_time=previous, seqs=[seq for seq, _ in items])
        else:
            for seq, ev in items:
                self.advance(seq, ev)
        if items:
            self.covered_seq = max(self.covered_seq, max(seq for seq, _ in items))
        self.after_records(len(items))

    def after_records(self, n: int) -> None:
        """Count ``n`` new events; save when ``persist_every`` have accumulated."""
        self.unsaved += n
        if self.unsaved >= self.persist_every:
            self.save()

    # ---- replaying ------------------------------------------------------------------------------
    def time_ordered(self) -> list[tuple[int, Event]]:
        """The stored events the state is built from (:func:`time_ordered`)."""
        return time_ordered(self._store)

    def sync(self) -> None:
        """Rebuild from the stored events if some were deleted, or older ones inserted, since the state was built."""
        if self.generation != self._store.generation:
            self.replay()
        elif self._pending is not None:
            self._replay(self._pending)

    def refresh(self) -> None:
        """Bring the state in line with the store: replay after deletions, rebuild a stale LSTM state."""
        self.sync()
        if self.lstm.stale:
            self.rebuild_model()
        elif self.lstm.candidates_stale:
            self.lstm.rebuild_candidates([ev for _, ev in self.time_ordered()])

    def rebuild_model(self) -> None:
        """Recompute the LSTM state from the whole stored history (in time order), once."""
        items = self.time_ordered() if self.lstm.model is not None else []
        self.lstm.rebuild([ev for _, ev in items], [seq for seq, _ in items])

    def replay(self) -> None:
        """Rebuild everything from the stored events, in time order (after deletions, insertions, old states)."""
        self._replay(_timeline(self._store.events()))

    def _replay(self, timeline: list[Entry]) -> None:
        self.generation = self._store.generation
        self._pending = None
        self.personal = self._new_personal()
        kept = kept_in_time_order(timeline)
        if kept:
            self.personal.update_many(kept)
        self.personal.newest = timeline[-1][2] if timeline else None
        self.covered_seq = max((seq for _, seq, _ in timeline), default=0)
        self.lstm.rebuild([ev for _, ev in kept] if self.lstm.model is not None else [], [seq for seq, _ in kept])

    def save(self) -> None:
        """Persist the state, labelled with the model version it was computed with."""
        self.refresh()
        state: dict[str, Any] = {"personal": self.personal.to_dict(), "model_version": self.model_version,
                                 "generation": self.generation, "format": FORMAT, "covered_seq": self.covered_seq,
                                 **self.lstm.to_dict()}
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
        last deletion (another :attr:`generation`), or in arrival order (not ``"format": 2``), is not
        used at all: everything is replayed. Events stored after the state that are all newer than it are
        taken in O(1) each; an older one among them means a replay.
        """
        state = self.slots.state()
        self.generation = self._store.generation
        if state is not None and (state.get("generation") != self.generation or state.get("format") != FORMAT):
            state = None  # saved before events were deleted, or in arrival order (format 1): replay all
        if state is None:
            self.replay()
            if self.covered_seq:
                self.save()
            return
        self.personal = PersonalState.from_dict(state["personal"])
        self.covered_seq = int(state.get("covered_seq", self.personal.last_seq))
        if self.personal.last_event is None and self.personal.last_seq > 0:
            # Saved before the state kept its last event: read it back from the store.
            found = self._store.events(since_seq=self.personal.last_seq - 1, limit=1)
            if found and found[0][0] == self.personal.last_seq:
                self.personal.last_event = found[0][1]
        if self.personal.newest is None:
            self.personal.newest = self.personal.last_event
        same_model = state.get("model_version") == self.model_version and not fresh_model
        if not (same_model and self.lstm.restore(state)):
            self.lstm.mark_stale()
        behind = self._store.events(since_seq=self.covered_seq)
        if not behind:
            return
        keys = [event_key(ev) for _, ev in behind]
        newest = self.personal.newest
        ascending = all(a <= b for a, b in pairwise(keys))
        if ascending and (newest is None or keys[0] >= event_key(newest)):
            if self.lstm.h is None:
                self.lstm.mark_stale()
            entries = ((k, seq, ev) for k, (seq, ev) in zip(keys, behind, strict=True))
            self.advance_many(kept_in_time_order(entries, self.personal.last_event))
            self.personal.newest = behind[-1][1]
            self.covered_seq = behind[-1][0]
        else:
            self.replay()
        self.save()
