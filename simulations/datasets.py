"""Loaders that turn the real datasets into per-user, time-ordered :class:`Event` lists.

Two real datasets ship under ``<repo>/../shared/datasets``:

- **Taobao UserBehavior** (head of the Tianchi file): ``user,item,category,behavior,timestamp``
  with no header. Behaviours map ``pv -> click``, ``cart -> cart``, ``fav -> favorite``,
  ``buy -> purchase``. Rows without five well-formed fields (the last line is cut) are
  skipped and counted; rows outside the official window can be filtered and counted.
- **MovieLens latest small**: ``ratings.csv`` joined with ``movies.csv``; genres become the
  categories, the movie title the title, every event has kind ``rate``.

:func:`load_dataset` dispatches by name, also to the synthetic population.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vane.shared.errors import DatasetError, EventValidationError
from vane.shared.events import OTHER, Event

logger = logging.getLogger("vane.simulations")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASETS_DIR = REPO_ROOT.parent / "shared" / "datasets"
TAOBAO_PATH = DATASETS_DIR / "taobao-userbehavior-head" / "UserBehavior_head.csv"
MOVIELENS_DIR = DATASETS_DIR / "movielens-latest-small"

#: Taobao behaviour codes -> Vane event kinds (``pv`` is an item detail page view).
TAOBAO_KINDS: dict[str, str] = {"pv": "click", "cart": "cart", "fav": "favorite", "buy": "purchase"}

#: The official Taobao window, 2017-11-25 .. 2017-12-03 in Beijing time (UTC+8), as UTC seconds [start, end).
TAOBAO_WINDOW: tuple[float, float] = (
    datetime(2017, 11, 24, 16, tzinfo=UTC).timestamp(),
    datetime(2017, 12, 3, 16, tzinfo=UTC).timestamp(),
)

MOVIELENS_NO_GENRES = "(no genres listed)"
_RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]
_MOVIES_HEADER = ["movieId", "title", "genres"]


@dataclass
class Dataset:
    """Per-user event histories of one dataset.

    Attributes
    ----------
    name : str
        ``"taobao"``, ``"movielens"`` or ``"synthetic"``.
    users : dict of str to list of Event
        Each user's events in time order (a stable sort keeps the file order of ties).
    stats : dict
        Counts gathered while loading: ``rows``, ``users``, ``skipped_malformed``, ``outside_window``, ….
    """

    name: str
    users: dict[str, list[Event]]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def num_events(self) -> int:
        return sum(len(events) for events in self.users.values())

    def category_counts(self) -> Counter[str]:
        """How often each category occurs over all events."""
        from vane.simulations.split import category_counts

        counts: Counter[str] = category_counts(self.users)
        return counts

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self.users)} users, {self.num_events} events)"


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{what} file not found: {path}; pass path= to point at it")
    return path


def _sorted_users(users: dict[str, list[Event]]) -> dict[str, list[Event]]:
    # sorted() is stable, so events with equal timestamps keep their file order.
    return {uid: sorted(events, key=lambda e: e.timestamp) for uid, events in users.items()}


def _parse_taobao_row(row: list[str]) -> tuple[str, str, str, str, int] | None:
    if len(row) != 5:
        return None
    user, item, category, behavior, ts = (value.strip() for value in row)
    if not (user and item and category) or behavior not in TAOBAO_KINDS:
        return None
    try:
        stamp = int(ts)
    except ValueError:
        return None
    return user, item, category, behavior, stamp


def load_taobao(path: str | Path | None = None, official_window: bool = True, max_users: int | None = None) -> Dataset:
    """Load the Taobao UserBehavior CSV.

    Parameters
    ----------
    path : str or Path, default None
        The CSV file; ``None`` means the copy under ``shared/datasets``.
    official_window : bool, default True
        Drop (and count) rows outside 2017-11-25..2017-12-03 Beijing time.
    max_users : int, default None
        Keep only the first ``max_users`` users in file order.

    Raises
    ------
    DatasetError
        The file is missing or has no usable row.
    """
    csv_path = _require_file(Path(path) if path is not None else TAOBAO_PATH, "Taobao UserBehavior")
    users: dict[str, list[Event]] = {}
    stats: Counter[str] = Counter()
    start, end = TAOBAO_WINDOW
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            parsed = _parse_taobao_row(row)
            if parsed is None:
                stats["skipped_malformed"] += 1
                continue
            user, item, category, behavior, stamp = parsed
            stats["rows"] += 1
            if official_window and not (start <= stamp < end):
                stats["outside_window"] += 1
                continue
            if user not in users:
                if max_users is not None and len(users) >= max_users:
                    continue
                users[user] = []
            try:
                event = Event.create(item, [category], stamp, TAOBAO_KINDS[behavior])
            except EventValidationError:
                stats["skipped_malformed"] += 1
                continue
            users[user].append(event)
    if not users:
        raise DatasetError(f"no usable Taobao rows in {csv_path}; expected user,item,category,behavior,timestamp")
    return _finish("taobao", users, stats, csv_path)


def _read_header(reader: Any, expected: list[str], path: Path) -> None:
    header = next(reader, None)
    if header is None or [h.strip().lstrip("\ufeff") for h in header] != expected:
        raise DatasetError(f"malformed header in {path}: got {header!r}; expected {','.join(expected)}")


def _load_movies(path: Path) -> dict[str, tuple[str, list[str]]]:
    movies: dict[str, tuple[str, list[str]]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        _read_header(reader, _MOVIES_HEADER, path)
        for row in reader:
            if len(row) != 3:
                continue
            movie_id, title, genres = row
            names = [g for g in genres.split("|") if g and g != MOVIELENS_NO_GENRES]
            movies[movie_id.strip()] = (title, names or [OTHER])
    return movies


def load_movielens(path: str | Path | None = None, max_users: int | None = None) -> Dataset:
    """Load MovieLens ratings as ``rate`` events whose categories are the movie's genres.

    Parameters
    ----------
    path : str or Path, default None
        The folder holding ``ratings.csv`` and ``movies.csv``; ``None`` means the copy under
        ``shared/datasets``.
    max_users : int, default None
        Keep only the first ``max_users`` users in file order.

    Raises
    ------
    DatasetError
        A file is missing or its header is not the MovieLens one.
    """
    folder = Path(path) if path is not None else MOVIELENS_DIR
    ratings_path = _require_file(folder / "ratings.csv", "MovieLens ratings")
    movies = _load_movies(_require_file(folder / "movies.csv", "MovieLens movies"))
    users: dict[str, list[Event]] = {}
    stats: Counter[str] = Counter()
    with ratings_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        _read_header(reader, _RATINGS_HEADER, ratings_path)
        for row in reader:
            if len(row) != 4:
                stats["skipped_malformed"] += 1
                continue
            user, movie_id = row[0].strip(), row[1].strip()
            stats["rows"] += 1
            if user not in users:
                if max_users is not None and len(users) >= max_users:
                    continue
                users[user] = []
            title, genres = movies.get(movie_id, (None, [OTHER]))
            if movie_id not in movies:
                stats["unknown_movie"] += 1
            try:
                event = Event.create(movie_id, genres, int(row[3]), "rate", title)
            except (EventValidationError, ValueError):
                stats["skipped_malformed"] += 1
                continue
            users[user].append(event)
    return _finish("movielens", users, stats, ratings_path)


def _finish(name: str, users: dict[str, list[Event]], stats: Counter[str], path: Path) -> Dataset:
    users = {uid: events for uid, events in users.items() if events}
    out: dict[str, Any] = {"rows": 0, "skipped_malformed": 0, "outside_window": 0, **stats}
    out["users"] = len(users)
    out["events"] = sum(len(events) for events in users.values())
    out["path"] = str(path)
    logger.info("loaded %s: %s users, %s events from %s", name, out["users"], out["events"], path)
    return Dataset(name, _sorted_users(users), out)


def load_dataset(name: str, path: str | Path | None = None, **kwargs: Any) -> Dataset:
    """Load a dataset by name: ``taobao``, ``movielens`` or ``synthetic``.

    Keyword arguments go to the loader (for ``synthetic``, to
    :class:`~vane.simulations.synthetic.SyntheticPopulation`; ``path`` is ignored there).
    """
    key = name.strip().lower()
    if key == "taobao":
        return load_taobao(path, **kwargs)
    if key == "movielens":
        return load_movielens(path, **kwargs)
    if key == "synthetic":
        from vane.simulations.synthetic import SyntheticPopulation

        kwargs.setdefault("num_users", 200)
        dataset: Dataset = SyntheticPopulation(**kwargs).as_dataset()
        return dataset
    raise DatasetError(f"unknown dataset {name!r}; expected one of taobao, movielens, synthetic")
