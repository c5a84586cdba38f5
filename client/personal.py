"""``PersonalState``: everything a tracker knows about one person without the model.

It is the decayed profile, the shift detector, the person's first-order category transitions and
the last *kept* event (the one the duplicate rule of :mod:`vane.shared.events` compares with). It is
rebuilt exactly by replaying the stored events in event-time order (:func:`time_key`; see
:mod:`vane.client.tracker_state`), and persisted (as JSON, inside the encrypted store) only as a cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vane.client.profile import DecayedProfile, TransitionEstimate
from vane.client.shifts import Shift, ShiftDetector
from vane.shared.events import Event


def event_key(event: Event) -> tuple[Any, ...]:
    """The order of events in time: timestamp, then item id, kind, title, categories and dwell.

    Everything but the timestamp is a tiebreak that depends only on the event itself, never on when
    it arrived, so events of the same instant replay in the same order whatever the import order.
    """
    return (event.unix_time, event.item_id, event.kind, event.title or "", event.categories,
            -1.0 if event.dwell_s is None else event.dwell_s)


def time_key(seq: int, event: Event) -> tuple[Any, ...]:
    """:func:`event_key` then ``seq``: between two identical events, the one stored first."""
    return (*event_key(event), seq)


@dataclass
class PersonalState:
    """One person's model-free state, advanced event by event.

    Attributes
    ----------
    profile : DecayedProfile
        The time-decayed interest profile.
    detector : ShiftDetector
        The short and long memories and the detected shifts.
    transitions : TransitionEstimate
        P(next category | last event's categories).
    last_event : Event or None
        The newest event kept (stored and replayed); duplicates are judged against it.
    last_seq : int
        The store sequence number of ``last_event`` (0 before any event).
    newest : Event or None
        The newest *stored* event in time (by :func:`event_key`); usually ``last_event``, unless a
        later-arriving older event made it a duplicate. An event after it advances the state in O(1).
    """

    profile: DecayedProfile
    detector: ShiftDetector
    transitions: TransitionEstimate = field(default_factory=TransitionEstimate)
    last_event: Event | None = None
    last_seq: int = 0
    newest: Event | None = None

    @classmethod
    def new(cls, half_life_s: float, detector_config: Mapping[str, float] | None = None) -> PersonalState:
        """An empty state.

        Parameters
        ----------
        half_life_s : float
            Half-life of the decayed profile, in seconds.
        detector_config : mapping, optional
            Keyword arguments of :class:`~vane.client.shifts.ShiftDetector`.
        """
        return cls(DecayedProfile(half_life_s=half_life_s), ShiftDetector(**dict(detector_config or {})))

    @property
    def last_time(self) -> float | None:
        """Unix time of the last kept event, None before any."""
        return None if self.last_event is None else self.last_event.unix_time

    @property
    def last_item(self) -> str | None:
        """Item id of the last kept event, None before any."""
        return None if self.last_event is None else self.last_event.item_id

    def update(self, seq: int, event: Event) -> Shift | None:
        """Advance through one kept event; returns the shift it revealed, if any."""
        now = event.unix_time
        self.profile.update(seq, event.item_id, event.title, event.categories, now)
        self.transitions.update(event.categories)
        shift = self.detector.update(event.categories, seq, now)
        self.last_event, self.last_seq = event, seq
        self.newest = event
        return shift

    def update_many(self, items: list[tuple[int, Event]]) -> None:
        """The same as :meth:`update` for each ``(seq, event)``, with the shift detector run as one block."""
        profile, transitions = self.profile, self.transitions
        for seq, event in items:
            profile.update(seq, event.item_id, event.title, event.categories, event.unix_time)
            transitions.update(event.categories)
        self.detector.update_many([(ev.categories, seq, ev.unix_time) for seq, ev in items])
        if items:
            self.last_seq, self.last_event = items[-1]
            self.newest = self.last_event

    def distributions(self) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """The short memory, the profile shares and the next-category transitions."""
        recent = self.detector.short
        return recent, self.profile.shares(), self.transitions.next_distribution()

    def last_categories(self) -> dict[str, float]:
        """The last event's categories, uniformly (the repeat-last prior); empty before any event."""
        last = self.transitions.last
        return {cat: 1.0 / len(last) for cat in last} if last else {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``last_time``/``last_item`` are kept for stores written before ``last_event``."""
        return {
            "profile": self.profile.to_dict(),
            "detector": self.detector.to_dict(),
            "transitions": self.transitions.to_dict(),
            "last_time": self.last_time,
            "last_item": self.last_item,
            "last_seq": self.last_seq,
            "last_event": None if self.last_event is None else self.last_event.to_dict(),
            "newest": None if self.newest is None else self.newest.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PersonalState:
        """Inverse of :meth:`to_dict`.

        A state saved before ``last_event`` existed loads with ``last_event`` None; the tracker then
        reads the event ``last_seq`` from its store.
        """
        last, newest = data.get("last_event"), data.get("newest")
        return cls(
            profile=DecayedProfile.from_dict(data["profile"]),
            detector=ShiftDetector.from_dict(data["detector"]),
            transitions=TransitionEstimate.from_dict(data["transitions"]),
            last_event=Event.from_dict(last) if last is not None else None,
            last_seq=int(data["last_seq"]),
            newest=Event.from_dict(newest) if newest is not None else None,
        )
