"""A synthetic population whose true interest mixture is known at every event.

Per user the generator draws, in this order:

1. **Timestamps.** Sessions of several events a minute or so apart, separated by gaps of hours
   to days, starting somewhere in the first two weeks after ``start``.
2. **The true mixture.** Logits with a few dominant categories drift by a small Gaussian random
   walk. For a fraction of users, at one or two known event indices, the logits jump to a new
   base whose dominant categories are not among the previous top ones (an abrupt shift). On
   weekends a per-user category gets a boost. ``truth[t] = softmax(logits[t])``.
3. **Events.** Within a session the next event stays on the previous category with probability
   ``stay_prob``; otherwise its category is drawn from ``truth[t]``. Staying keeps the long-run
   category frequencies equal to the mixture, so observed frequencies match the truth. Items
   follow a Zipf law within their category (``"c03-i0042"``), titles come from per-category
   vocabularies, and kinds are mostly views and clicks.

Everything comes from ``numpy.random.default_rng([seed, user_index])``, so a user's data does not
depend on how many users are generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

import numpy as np
from vane.shared.errors import ConfigError
from vane.shared.events import Event
from vane.shared.synthetic_vocab import SYNTHETIC_CATEGORIES
from vane.simulations.datasets import Dataset

#: The words the item titles of each category are made of (keys: SYNTHETIC_CATEGORIES, in order).
CATEGORY_VOCABULARY: dict[str, tuple[str, ...]] = {
    "sports": tuple(
        (
            "football tennis league match goal coach stadium marathon training fitness cycling team "
            "score season player trophy running basketball derby final"
        ).split()
    ),
    "cooking": tuple(
        (
            "recipe pasta bread oven spice soup baking chef kitchen sauce garlic salad dessert grill "
            "curry noodle vegan knife broth pastry"
        ).split()
    ),
    "travel": tuple(
        (
            "flight hotel beach island passport itinerary hostel cruise backpack city museum mountain "
            "train resort visa guide luggage road trip lagoon"
        ).split()
    ),
    "technology": tuple(
        (
            "laptop smartphone processor software cloud robot chip battery app code network gadget "
            "server keyboard display update wireless sensor drone linux"
        ).split()
    ),
    "fashion": tuple(
        (
            "dress sneaker jacket denim style runway handbag scarf boots silk trend outfit linen coat "
            "designer vintage shirt knit tailored collection"
        ).split()
    ),
    "music": tuple(
        (
            "album guitar concert vinyl playlist band piano festival song jazz chord drums singer tour "
            "remix orchestra lyrics studio violin beat"
        ).split()
    ),
    "finance": tuple(
        (
            "stock budget savings mortgage crypto dividend tax loan portfolio bond inflation pension "
            "invest market credit bank fund interest retirement index"
        ).split()
    ),
    "gaming": tuple(
        (
            "console quest level controller esports boss multiplayer rpg speedrun mod arcade shooter "
            "puzzle loot dungeon pixel strategy clan patch sandbox"
        ).split()
    ),
    "health": tuple(
        (
            "sleep vitamin yoga diet therapy doctor immune stress posture hydration meditation clinic "
            "protein allergy wellness stretch heart vaccine calm recovery"
        ).split()
    ),
    "home": tuple(
        (
            "sofa garden lamp paint shelf rug plant curtain kitchenware bedding tile drill storage "
            "decor mattress balcony cushion renovation tools wallpaper"
        ).split()
    ),
    "science": tuple(
        (
            "galaxy atom genome climate fossil telescope quantum cell volcano enzyme orbit physics "
            "chemistry neuron experiment planet evolution laser ocean theory"
        ).split()
    ),
    "books": tuple(
        (
            "novel author chapter poetry memoir fantasy mystery library paperback saga classic thriller "
            "essay biography fiction edition reader series prose atlas"
        ).split()
    ),
}

_KINDS = ("view", "click", "cart", "purchase", "favorite")
_KIND_PROBS = np.array([0.62, 0.28, 0.05, 0.03, 0.02])
_WEEK_S = 7 * 86400.0


@dataclass(frozen=True)
class Shift:
    """An abrupt interest shift: at event ``index`` the dominant categories change."""

    index: int
    from_top: tuple[str, ...]
    to_top: tuple[str, ...]


def _category_names(num_categories: int) -> list[str]:
    names = list(SYNTHETIC_CATEGORIES)[:num_categories]
    names += [f"topic-{i:02d}" for i in range(len(names), num_categories)]
    return names


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = z / z.sum(axis=1, keepdims=True)
    return out


def _sample_rows(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One index per row of a cumulative distribution (rows may differ)."""
    u = rng.random(cdf.shape[0]) * cdf[:, -1]
    out: np.ndarray = np.minimum((cdf < u[:, None]).sum(axis=1), cdf.shape[1] - 1)
    return out


class SyntheticPopulation:
    """Users with drifting interests, abrupt shifts, weekly rhythm and sessions.

    Parameters
    ----------
    num_users : int
        How many users to generate (ids ``"u0000"``, ``"u0001"``, …).
    num_categories : int, default 12
        Categories; the first 12 have readable names, further ones are ``"topic-NN"``.
    events_per_user : (int, int), default (150, 300)
        Inclusive range of each user's event count.
    seed : int, default 0
    shift_fraction : float, default 0.5
        Fraction of users with abrupt shifts (one or two each).
    num_dominant : int, default 3
        Dominant categories of a mixture.
    dominance : float, default 3.0
        Logit boost of a dominant category.
    drift_scale : float, default 0.05
        Standard deviation of the per-event logit random walk.
    weekend_boost : float, default 1.0
        Logit boost of each user's weekend category on Saturdays and Sundays.
    stay_prob : float, default 0.5
        Within a session, chance that an event stays on the previous event's category.
    session_length : float, default 8.0
        Mean events per session.
    items_per_category : int, default 500
    zipf_exponent : float, default 1.1
        Item popularity within a category is proportional to ``rank ** -zipf_exponent``.
    start : datetime, default 2024-01-01 UTC
    """

    def __init__(
        self,
        num_users: int,
        num_categories: int = 12,
        events_per_user: tuple[int, int] = (150, 300),
        seed: int = 0,
        shift_fraction: float = 0.5,
        num_dominant: int = 3,
        dominance: float = 3.0,
        drift_scale: float = 0.05,
        weekend_boost: float = 1.0,
        stay_prob: float = 0.5,
        session_length: float = 8.0,
        items_per_category: int = 500,
        zipf_exponent: float = 1.1,
        start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    ) -> None:
        lo, hi = events_per_user
        if num_users < 1 or num_categories < 2 or not (1 <= lo <= hi):
            raise ConfigError(
                f"num_users={num_users}, num_categories={num_categories}, events_per_user={events_per_user}; "
                "expected num_users >= 1, num_categories >= 2 and 1 <= low <= high"
            )
        if not (0 <= shift_fraction <= 1 and 0 <= stay_prob < 1) or not (1 <= num_dominant < num_categories):
            raise ConfigError(
                f"shift_fraction={shift_fraction}, stay_prob={stay_prob}, num_dominant={num_dominant}; expected "
                "fractions in [0, 1] (stay_prob < 1) and 1 <= num_dominant < num_categories"
            )
        self.num_users = num_users
        self.events_per_user = (lo, hi)
        self.seed = seed
        self.shift_fraction = shift_fraction
        self.num_dominant = num_dominant
        self.dominance = dominance
        self.drift_scale = drift_scale
        self.weekend_boost = weekend_boost
        self.stay_prob = stay_prob
        self.session_length = session_length
        self.zipf_exponent = zipf_exponent
        self.start = start
        self.categories: list[str] = _category_names(num_categories)
        ranks = np.arange(1, items_per_category + 1, dtype=float)
        self._item_cdf = np.cumsum(ranks**-zipf_exponent / np.sum(ranks**-zipf_exponent))
        self._titles = self._make_titles(items_per_category)

        self.users: dict[str, list[Event]] = {}
        self.truth: dict[str, np.ndarray] = {}
        self.shifts: dict[str, list[int]] = {}
        self.shift_details: dict[str, list[Shift]] = {}
        self.weekend_category: dict[str, str] = {}
        for i in range(num_users):
            self._generate_user(f"u{i:04d}", np.random.default_rng([seed, i]))

    @property
    def num_categories(self) -> int:
        return len(self.categories)

    def _make_titles(self, items_per_category: int) -> list[list[str]]:
        rng = np.random.default_rng([self.seed, 1 << 30])
        titles = []
        for name in self.categories:
            words = CATEGORY_VOCABULARY.get(name) or tuple(f"{name}-w{j:02d}" for j in range(20))
            lengths = rng.integers(2, 5, size=items_per_category)
            titles.append(
                [" ".join(words[j] for j in rng.choice(len(words), n, replace=False)).capitalize() for n in lengths]
            )
        return titles

    # -- one user -------------------------------------------------------------------
    def _timestamps(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Unix seconds and a session id per event."""
        new_session = rng.random(n) < 1.0 / self.session_length
        new_session[0] = True
        within = 5.0 + rng.exponential(60.0, n)
        between = np.exp(rng.normal(np.log(6 * 3600.0), 1.0, n))
        gaps = np.where(new_session, between, within)
        gaps[0] = rng.uniform(0, 2 * _WEEK_S)
        return self.start.timestamp() + np.cumsum(gaps), np.cumsum(new_session)

    def _base_logits(self, rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
        pool = np.setdiff1d(np.arange(self.num_categories), avoid)
        if pool.size < self.num_dominant:
            pool = np.arange(self.num_categories)
        dominant = rng.choice(pool, self.num_dominant, replace=False)
        logits = rng.normal(0.0, 0.5, self.num_categories)
        logits[dominant] += self.dominance + rng.normal(0.0, 0.3, self.num_dominant)
        return logits

    def _shift_indices(self, rng: np.random.Generator, n: int) -> list[int]:
        if rng.random() >= self.shift_fraction or n < 20:
            return []
        count = 1 if n < 100 or rng.random() < 0.5 else 2
        lo, hi = int(0.2 * n), int(0.8 * n)
        if count == 1:
            return [int(rng.integers(lo, hi))]
        first = int(rng.integers(lo, (lo + hi) // 2))
        return [first, int(rng.integers(first + max(10, n // 10), hi + max(10, n // 10)))]

    def _mixture(
        self, rng: np.random.Generator, n: int, shifts: list[int], weekend: np.ndarray, weekend_cat: int
    ) -> tuple[np.ndarray, list[Shift]]:
        k = self.num_dominant
        logits = np.empty((n, self.num_categories))
        bounds = [0, *shifts, n]
        details: list[Shift] = []
        base = self._base_logits(rng, np.zeros(0, dtype=int))
        for seg, (a, b) in enumerate(pairwise(bounds)):
            if seg > 0:
                previous_top = np.argsort(-logits[a - 1], kind="stable")[:k]
                base = self._base_logits(rng, previous_top)
            walk = np.cumsum(rng.normal(0.0, self.drift_scale, (b - a, self.num_categories)), axis=0)
            logits[a:b] = base + walk
        logits[:, weekend_cat] += self.weekend_boost * weekend
        truth = _softmax(logits)
        for s in shifts:
            details.append(
                Shift(
                    s,
                    tuple(self.categories[j] for j in np.argsort(-truth[s - 1], kind="stable")[:k]),
                    tuple(self.categories[j] for j in np.argsort(-truth[s], kind="stable")[:k]),
                )
            )
        return truth, details

    def _generate_user(self, uid: str, rng: np.random.Generator) -> None:
        lo, hi = self.events_per_user
        n = int(rng.integers(lo, hi + 1))
        times, session = self._timestamps(rng, n)
        # Python's weekday(): Monday is 0; 1970-01-01 was a Thursday (3).
        weekend = (((times // 86400.0).astype(np.int64) + 3) % 7 >= 5).astype(float)
        weekend_cat = int(rng.integers(self.num_categories))
        shifts = self._shift_indices(rng, n)
        truth, details = self._mixture(rng, n, shifts, weekend, weekend_cat)

        drawn = _sample_rows(rng, np.cumsum(truth, axis=1))
        stay = rng.random(n) < self.stay_prob
        cats = drawn.tolist()
        # Staying only happens within a session: a new session starts from the mixture.
        for t, staying in enumerate((stay[1:] & (session[1:] == session[:-1])).tolist(), start=1):
            if staying:
                cats[t] = cats[t - 1]
        items = np.minimum(np.searchsorted(self._item_cdf, rng.random(n)), self._item_cdf.size - 1).tolist()
        kinds = rng.choice(len(_KINDS), n, p=_KIND_PROBS).tolist()
        names, titles = self.categories, self._titles
        events = [
            Event(
                f"c{c:02d}-i{item:04d}", (names[c],), datetime.fromtimestamp(ts, tz=UTC), _KINDS[kind], titles[c][item]
            )
            for c, item, ts, kind in zip(cats, items, times.tolist(), kinds, strict=True)
        ]
        self.users[uid] = events
        self.truth[uid] = truth
        self.shifts[uid] = list(shifts)
        self.shift_details[uid] = details
        self.weekend_category[uid] = self.categories[weekend_cat]

    # -- views ----------------------------------------------------------------------
    def category_index(self, name: str) -> int:
        return self.categories.index(name)

    def as_dataset(self) -> Dataset:
        """The population as a :class:`~vane.simulations.datasets.Dataset` named ``"synthetic"``."""
        events = sum(len(e) for e in self.users.values())
        stats = {
            "rows": events,
            "users": len(self.users),
            "events": events,
            "skipped_malformed": 0,
            "outside_window": 0,
            "shifted_users": sum(1 for s in self.shifts.values() if s),
            "shifts": sum(len(s) for s in self.shifts.values()),
            "seed": self.seed,
            "categories": list(self.categories),
        }
        return Dataset("synthetic", self.users, stats)
