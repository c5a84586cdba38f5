"""Non-neural next-category baselines and the online evaluation protocol.

Every predictor works on raw category names (not limited to a taxonomy) and has two phases:

1. :meth:`OnlinePredictor.fit` reads the training portion of every user once and keeps
   global statistics; its category vocabulary is ordered by training popularity, so ties in
   any score are broken in favour of the more popular category.
2. Per user, :meth:`~OnlinePredictor.reset`, then :meth:`~OnlinePredictor.observe` each event
   in time order; :meth:`~OnlinePredictor.scores` (an array over :attr:`~OnlinePredictor.vocab`),
   :meth:`~OnlinePredictor.score_dict` or :meth:`~OnlinePredictor.ranked` predict the next one.

Predictors
    :class:`GlobalPopularity`, :class:`DecayedFrequency` (the article's U vector),
    :class:`RepeatLast`, :class:`MarkovChain` and :class:`DecayedFrequencyMarkov`.

:func:`evaluate_next_category` replays each user's train and validation events, then predicts
every test event from everything before it, observing it only afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from vane.shared.errors import ConfigError
from vane.shared.events import OTHER, Event
from vane.shared.metrics import DEFAULT_KS, RankingAccumulator
from vane.simulations.split import Split, category_counts


class OnlinePredictor:
    """Base class: a popularity-ordered, growing category vocabulary and the per-user protocol."""

    name = "base"

    def __init__(self) -> None:
        self.vocab: list[str] = []
        self._index: dict[str, int] = {}
        self._popularity = np.zeros(0)
        self._last: tuple[int, ...] = ()
        self._last_time: float | None = None

    # -- vocabulary ---------------------------------------------------------------
    def _indices(self, categories: Iterable[str], grow: bool = True) -> tuple[int, ...]:
        out: list[int] = []
        for name in categories:
            index = self._index.get(name)
            if index is None and grow:
                index = self._index[name] = len(self.vocab)
                self.vocab.append(name)
            if index is not None and index not in out:
                out.append(index)
        return tuple(out)

    def known_indices(self, categories: Iterable[str]) -> tuple[int, ...]:
        """Positions in :attr:`vocab` of the ``categories`` the predictor knows; unknown ones are left out."""
        return self._indices(categories, grow=False)

    def index_of(self, name: str) -> int:
        """Position of ``name`` in :attr:`vocab`; -1 when the predictor does not know it."""
        return self._index.get(name, -1)

    def _sized(self, array: np.ndarray) -> np.ndarray:
        """``array`` zero-padded to the current vocabulary size."""
        if array.shape[0] >= len(self.vocab):
            return array
        return np.concatenate([array, np.zeros(len(self.vocab) - array.shape[0])])

    @property
    def popularity(self) -> np.ndarray:
        """Training share of each category (sums to 1 over the training vocabulary)."""
        self._popularity = self._sized(self._popularity)
        return self._popularity

    # -- protocol -----------------------------------------------------------------
    def fit(self, train_users: Mapping[str, Sequence[Event]]) -> OnlinePredictor:
        """Learn global statistics from the training events of all users."""
        counts = category_counts(train_users)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        self.vocab = [name for name, _ in ranked]
        self._index = {name: i for i, name in enumerate(self.vocab)}
        total = float(sum(counts.values())) or 1.0
        self._popularity = np.array([n for _, n in ranked], dtype=float) / total
        self._fit_sequences(train_users)
        self.reset()
        return self

    def _fit_sequences(self, train_users: Mapping[str, Sequence[Event]]) -> None:
        """Hook for global sequence statistics."""

    def reset(self) -> None:
        """Forget the current user; keep what :meth:`fit` learned."""
        self._last = ()
        self._last_time = None

    def observe(self, event: Event) -> None:
        """Update the current user's state with the next event."""
        cats = self._indices(event.categories)
        self._update(cats, event.unix_time)
        self._last = cats
        self._last_time = event.unix_time

    def _update(self, cats: tuple[int, ...], time: float) -> None:
        """Hook for per-user state."""

    def scores(self) -> np.ndarray:
        """Scores of the next event's category over :attr:`vocab`; higher is more likely."""
        return self.popularity.copy()

    def score_dict(self) -> dict[str, float]:
        return dict(zip(self.vocab, self.scores().tolist(), strict=True))

    def ranked(self, k: int | None = None) -> list[str]:
        """Categories best first; ties go to the more popular category."""
        order = np.argsort(-self.scores(), kind="stable")
        return [self.vocab[i] for i in order[:k]]


class GlobalPopularity(OnlinePredictor):
    """The most frequent categories in the training data, the same for everyone."""

    name = "popularity"


class DecayedFrequency(OnlinePredictor):
    """The user's own exponentially decayed category frequency (the article's interest vector U).

    Parameters
    ----------
    half_life_events : float or None, default 20.0
        Weight halves every this many events; ``None`` for no per-event decay.
    half_life_s : float or None, default None
        Weight also halves every this many seconds of elapsed time.
    """

    name = "decayed-frequency"

    def __init__(self, half_life_events: float | None = 20.0, half_life_s: float | None = None) -> None:
        super().__init__()
        for label, value in (("half_life_events", half_life_events), ("half_life_s", half_life_s)):
            if value is not None and value <= 0:
                raise ConfigError(f"{label} is {value!r}; expected a positive number or None")
        self.half_life_events = half_life_events
        self.half_life_s = half_life_s
        self._u = np.zeros(0)

    def reset(self) -> None:
        super().reset()
        self._u = np.zeros(len(self.vocab))

    def _decay(self, time: float) -> float:
        factor = 1.0
        if self.half_life_events is not None:
            factor *= 0.5 ** (1.0 / self.half_life_events)
        if self.half_life_s is not None and self._last_time is not None:
            factor *= 0.5 ** (max(0.0, time - self._last_time) / self.half_life_s)
        return factor

    def _update(self, cats: tuple[int, ...], time: float) -> None:
        self._u = self._sized(self._u) * self._decay(time)
        self._u[list(cats)] += 1.0

    @property
    def interest(self) -> np.ndarray:
        """The decayed frequency vector U over :attr:`vocab`, normalised to sum 1 (zeros before any event)."""
        u = self._sized(self._u)
        total = u.sum()
        return u / total if total > 0 else u

    def scores(self) -> np.ndarray:
        u = self._sized(self._u)
        return u.copy() if u.any() else self.popularity.copy()


class RepeatLast(DecayedFrequency):
    """The last event's categories first, then the rest by decayed frequency, then by popularity."""

    name = "repeat-last"

    def scores(self) -> np.ndarray:
        base = super().scores()
        if self._last:
            base[list(self._last)] += base.max() + 1.0
        return base


class MarkovChain(OnlinePredictor):
    """First-order category transitions: global counts from training, blended with the user's own.

    ``P(next | prev) = (user[prev, next] + beta * G(next | prev)) / (user[prev] + beta)`` with the global
    ``G(next | prev) = (global[prev, next] + alpha * popularity(next)) / (global[prev] + alpha)``, so an
    unseen transition backs off to popularity. With several previous categories the rows are averaged.

    Parameters
    ----------
    alpha : float, default 1.0
        Popularity smoothing of the global transitions.
    beta : float, default 5.0
        Weight of the global transitions against the user's own counts.
    """

    name = "markov"

    def __init__(self, alpha: float = 1.0, beta: float = 5.0) -> None:
        super().__init__()
        if alpha <= 0 or beta <= 0:
            raise ConfigError(f"alpha={alpha!r}, beta={beta!r}; expected both > 0")
        self.alpha = alpha
        self.beta = beta
        self._global: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        self._user: dict[int, dict[int, float]] = {}

    @staticmethod
    def _transitions(prev: tuple[int, ...], cats: tuple[int, ...]) -> Iterable[tuple[int, int, float]]:
        weight = 1.0 / (len(prev) * len(cats))
        for p in prev:
            for n in cats:
                yield p, n, weight

    def _fit_sequences(self, train_users: Mapping[str, Sequence[Event]]) -> None:
        counts: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for events in train_users.values():
            prev: tuple[int, ...] = ()
            for event in events:
                cats = self._indices(event.categories)
                if prev:
                    for p, n, w in self._transitions(prev, cats):
                        counts[p][n] += w
                prev = cats
        self._global = {
            p: (np.fromiter(row.keys(), int), np.fromiter(row.values(), float), float(sum(row.values())))
            for p, row in counts.items()
        }

    def reset(self) -> None:
        super().reset()
        self._user = {}

    def _update(self, cats: tuple[int, ...], time: float) -> None:
        if self._last:
            for p, n, w in self._transitions(self._last, cats):
                row = self._user.setdefault(p, {})
                row[n] = row.get(n, 0.0) + w

    def _global_row(self, prev: int) -> np.ndarray:
        row = self.alpha * self.popularity
        idx, values, total = self._global.get(prev, (np.zeros(0, int), np.zeros(0), 0.0))
        row[idx] += values
        return row / (total + self.alpha)

    def transition_probabilities(self) -> np.ndarray:
        """``P(next | last event)`` over :attr:`vocab`; the popularity when nothing was observed."""
        if not self._last:
            return self.popularity.copy()
        probs = np.zeros(len(self.vocab))
        for prev in self._last:
            row = self.beta * self._global_row(prev)
            user = self._user.get(prev, {})
            if user:
                row[list(user.keys())] += list(user.values())
            probs += row / (sum(user.values()) + self.beta)
        return probs / len(self._last)

    def scores(self) -> np.ndarray:
        return self.transition_probabilities()


class DecayedFrequencyMarkov(MarkovChain):
    """A mix of the user's normalised decayed frequency and the Markov transition probabilities.

    Parameters
    ----------
    weight : float, default 0.5
        Weight of the decayed frequency; ``1 - weight`` goes to the Markov chain.
    half_life_events : float or None, default 20.0
    half_life_s : float or None, default None
        As for :class:`DecayedFrequency`.
    alpha, beta : float
        As for :class:`MarkovChain`.
    """

    name = "decayed-frequency+markov"

    def __init__(
        self,
        weight: float = 0.5,
        half_life_events: float | None = 20.0,
        half_life_s: float | None = None,
        alpha: float = 1.0,
        beta: float = 5.0,
    ) -> None:
        if not (0.0 <= weight <= 1.0):
            raise ConfigError(f"weight is {weight!r}; expected a number in [0, 1]")
        self.weight = weight
        self._frequency = DecayedFrequency(half_life_events, half_life_s)
        super().__init__(alpha, beta)

    def reset(self) -> None:
        super().reset()
        # The frequency part shares this predictor's vocabulary, so indices agree.
        self._frequency.vocab, self._frequency._index = self.vocab, self._index
        self._frequency.reset()

    def observe(self, event: Event) -> None:
        self._frequency.observe(event)
        super().observe(event)

    def scores(self) -> np.ndarray:
        return self.weight * self._frequency.interest + (1.0 - self.weight) * self.transition_probabilities()


def best_rank(scores: np.ndarray, targets: tuple[int, ...]) -> float:
    """1-based rank of the best target, ties broken by lower index (as a stable sort would)."""
    best = float("inf")
    positions = np.arange(scores.shape[0])
    for t in targets:
        if t >= scores.shape[0]:
            continue
        s = scores[t]
        rank = 1 + int(np.count_nonzero(scores > s)) + int(np.count_nonzero((scores == s) & (positions < t)))
        best = min(best, float(rank))
    return best


def evaluate_next_category(
    predictor_factory: Callable[[], OnlinePredictor],
    split: Split,
    exclude: Iterable[str] = (OTHER,),
    ks: tuple[int, ...] = DEFAULT_KS,
) -> dict[str, float]:
    """Online next-category evaluation of one baseline.

    The predictor is fit on ``split.train``. For each evaluated user it observes the train and
    validation events, then predicts each test event from everything before it and observes it
    only afterwards. A test event is a hit when any of its categories (other than ``exclude``)
    ranks in the top k; a category the predictor has never seen is a miss.

    Returns
    -------
    dict
        ``hr@1``, ``hr@5``, ``hr@10``, ``ndcg@10``, ``mrr``, ``count`` and ``users``.
    """
    predictor = predictor_factory()
    predictor.fit(split.train)
    excluded = set(exclude)
    accumulator = RankingAccumulator(ks=ks)
    users = split.evaluated_users
    for uid in users:
        predictor.reset()
        for event in split.history(uid):
            predictor.observe(event)
        for event in split.test[uid]:
            wanted = [c for c in event.categories if c not in excluded]
            targets = predictor.known_indices(wanted)
            accumulator.add_rank(best_rank(predictor.scores(), targets) if targets else float("inf"))
            predictor.observe(event)
    result: dict[str, float] = accumulator.result()
    result["users"] = float(len(users))
    return result


#: The baselines of the evaluation protocol, by name.
BASELINES: dict[str, Callable[[], OnlinePredictor]] = {
    "popularity": GlobalPopularity,
    "decayed-frequency": DecayedFrequency,
    "repeat-last": RepeatLast,
    "markov": MarkovChain,
    "decayed-frequency+markov": DecayedFrequencyMarkov,
}


def evaluate_baselines(
    split: Split, baselines: Mapping[str, Callable[[], OnlinePredictor]] | None = None
) -> dict[str, dict[str, float]]:
    """:func:`evaluate_next_category` for every baseline in ``baselines`` (default :data:`BASELINES`)."""
    return {name: evaluate_next_category(factory, split) for name, factory in (baselines or BASELINES).items()}
