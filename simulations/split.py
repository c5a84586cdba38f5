"""The per-user temporal split of the evaluation protocol.

Each user's last events are the test set, the ones before them validation, the rest
training. Nothing from a user's future is trained on: within a user, every training event
is no later than every validation event, which is no later than every test event.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vane.shared.errors import ConfigError
from vane.shared.events import Event
from vane.shared.taxonomy import Taxonomy


@dataclass
class Split:
    """Train, validation and test events per user, each list in time order.

    Users too short to split are kept train-only: they appear in ``train`` but not in
    ``val`` or ``test``, and are counted in ``train_only_users``.
    """

    train: dict[str, list[Event]]
    val: dict[str, list[Event]]
    test: dict[str, list[Event]]
    train_only_users: int = 0
    params: dict[str, float] = field(default_factory=dict)

    @property
    def evaluated_users(self) -> list[str]:
        """Users with at least one test event."""
        return [uid for uid, events in self.test.items() if events]

    def history(self, user_id: str) -> list[Event]:
        """Train followed by validation events of one user: everything before the test events."""
        return self.train.get(user_id, []) + self.val.get(user_id, [])

    def stats(self) -> dict[str, int]:
        return {
            "users": len(self.train),
            "evaluated_users": len(self.evaluated_users),
            "train_only_users": self.train_only_users,
            "train_events": sum(map(len, self.train.values())),
            "val_events": sum(map(len, self.val.values())),
            "test_events": sum(map(len, self.test.values())),
        }


def _check_fraction(name: str, value: float) -> None:
    if not (0.0 <= value < 1.0):
        raise ConfigError(f"{name} is {value!r}; expected a fraction in [0, 1)")


def temporal_split(
    users: Mapping[str, Sequence[Event]],
    test_frac: float = 0.1,
    val_frac: float = 0.1,
    min_test: int = 1,
    min_train: int = 5,
) -> Split:
    """Split every user's time-ordered events into train / validation / test by time.

    Parameters
    ----------
    users : mapping of str to sequence of Event
        Per-user events in time order (as :class:`~vane.simulations.datasets.Dataset` gives them).
    test_frac : float, default 0.1
        Fraction of each user's events (rounded up, at least ``min_test``) held out as test.
    val_frac : float, default 0.1
        Fraction (rounded up; 0 gives no validation) of the events before the test ones used for validation.
    min_test : int, default 1
        Fewest test events per evaluated user.
    min_train : int, default 5
        Fewest training events; a user who cannot keep this many is train-only.

    Returns
    -------
    Split
    """
    _check_fraction("test_frac", test_frac)
    _check_fraction("val_frac", val_frac)
    if min_test < 1 or min_train < 1:
        raise ConfigError(f"min_test={min_test}, min_train={min_train}; expected both >= 1")
    train: dict[str, list[Event]] = {}
    val: dict[str, list[Event]] = {}
    test: dict[str, list[Event]] = {}
    train_only = 0
    for uid, events in users.items():
        seq = list(events)
        n = len(seq)
        n_test = max(min_test, math.ceil(test_frac * n))
        n_val = math.ceil(val_frac * n) if val_frac > 0 else 0
        if n - n_test - n_val < min_train:
            train[uid] = seq
            train_only += 1
            continue
        cut_val, cut_test = n - n_test - n_val, n - n_test
        train[uid], val[uid], test[uid] = seq[:cut_val], seq[cut_val:cut_test], seq[cut_test:]
    params = {"test_frac": test_frac, "val_frac": val_frac, "min_test": min_test, "min_train": min_train}
    return Split(train, val, test, train_only, params)


def category_counts(users: Mapping[str, Iterable[Event]]) -> Counter[str]:
    """How often each category occurs in the given events (pass ``split.train`` for train-only counts)."""
    counts: Counter[str] = Counter()
    for events in users.values():
        for event in events:
            counts.update(event.categories)
    return counts


def train_category_counts(split: Split) -> Counter[str]:
    """Category counts over the training portion only, so the taxonomy never sees test data."""
    return category_counts(split.train)


def train_taxonomy(split: Split, max_size: int = 256) -> Taxonomy:
    """A taxonomy built from the training portion of ``split``."""
    return Taxonomy.from_counts(train_category_counts(split), max_size)
