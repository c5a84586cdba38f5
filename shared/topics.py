"""The Topics taxonomy v2: 469 interest topics in a tree under 22 top-level topics.

The tree is the package resource ``vane/shared/topics_taxonomy_v2.tsv`` (Apache-2.0, Google LLC;
see ``TOPICS_NOTICE`` beside it): one ``id<TAB>path`` row per topic, where the path is the full
name (``/Sports/Basketball``) and the parent is the path without its last part.

In Vane a topic's **category name is its full path**: events, interests and predictions carry
``/Sports/Basketball``, readable by a person and unambiguous. The ids are what curated rules files
write (:mod:`vane.client.history.site_topics`), since they are the Topics API's own identifiers.
:meth:`TopicTree.taxonomy` is the model vocabulary (``builtin:topics``): ``other`` then every path
in ascending id order.

A parent's interest includes its children's: :meth:`TopicTree.rollup` moves a distribution over
full topics up to any level (level 1 = the 22 top-level topics), and :meth:`TopicTree.subtree_totals`
gives every topic its own share plus all its descendants'.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from vane.shared.errors import TaxonomyError
from vane.shared.taxonomy import Taxonomy

#: The packaged file, in ``vane.shared``.
TOPICS_RESOURCE = "topics_taxonomy_v2.tsv"
#: Topics in the v2 taxonomy, and top-level topics among them.
N_TOPICS = 469
N_ROOTS = 22


@dataclass(frozen=True)
class Topic:
    """One node of the tree.

    Attributes
    ----------
    id : int
        The Topics API id (ids are not in tree order).
    path : str
        The full name, e.g. ``/Sports/Basketball``; it is the category name in Vane.
    parent : int or None
        The parent's id; None for a top-level topic.
    level : int
        1 for a top-level topic, 2 for its children, and so on.
    children : tuple of int
        The children's ids, in file order.
    """

    id: int
    path: str
    parent: int | None
    level: int
    children: tuple[int, ...]

    @property
    def name(self) -> str:
        """The last part of the path (``Basketball``)."""
        return self.path.rsplit("/", 1)[1]

    @property
    def parts(self) -> tuple[str, ...]:
        """Every part of the path, top first (``("Sports", "Basketball")``)."""
        return tuple(self.path.strip("/").split("/"))


def _parse(text: str, source: str) -> list[tuple[int, str]]:
    lines = text.splitlines()
    if not lines or lines[0].split("\t") != ["id", "topic"]:
        raise TaxonomyError(f"topics file {source}: the header is {lines[:1]!r}; expected 'id<TAB>topic'")
    rows: list[tuple[int, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].isdigit() or not fields[1].startswith("/") or fields[1].endswith("/"):
            raise TaxonomyError(f"topics file {source} line {number}: {line!r}; expected '<id><TAB>/Path/Of/Topic'")
        rows.append((int(fields[0]), fields[1]))
    return rows


class TopicTree:
    """The topics, looked up by id or by path, with their tree.

    Build one with :func:`topics` (the packaged v2 file) or :meth:`from_tsv`.

    Raises
    ------
    TaxonomyError
        From the constructor: a repeated id or path, or a topic whose parent path is not a topic.
    """

    __slots__ = ("_by_id", "_by_path", "_order", "_roots")

    def __init__(self, rows: Iterable[tuple[int, str]], source: str = "<rows>") -> None:
        rows = list(rows)
        by_path: dict[str, int] = {}
        for topic_id, path in rows:
            if path in by_path:
                raise TaxonomyError(f"topics file {source}: the path {path!r} appears twice")
            if topic_id in by_path.values():
                raise TaxonomyError(f"topics file {source}: the id {topic_id} appears twice")
            by_path[path] = topic_id
        children: dict[int, list[int]] = {topic_id: [] for topic_id, _ in rows}
        parents: dict[int, int | None] = {}
        for topic_id, path in rows:
            parent_path = path.rsplit("/", 1)[0]
            if not parent_path:
                parents[topic_id] = None
                continue
            if parent_path not in by_path:
                raise TaxonomyError(f"topics file {source}: the parent {parent_path!r} of {path!r} is not a topic")
            parents[topic_id] = by_path[parent_path]
            children[by_path[parent_path]].append(topic_id)
        self._by_id = {topic_id: Topic(topic_id, path, parents[topic_id], path.count("/"), tuple(children[topic_id]))
                       for topic_id, path in rows}
        self._by_path = {topic.path: topic for topic in self._by_id.values()}
        self._order = tuple(sorted(self._by_id))
        self._roots = tuple(t for t in self._by_id.values() if t.parent is None)

    @classmethod
    def from_tsv(cls, text: str, source: str = "<text>") -> TopicTree:
        """The tree of a ``id<TAB>topic`` file's text."""
        return cls(_parse(text, source), source)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Topic]:
        """The topics in ascending id order."""
        return (self._by_id[i] for i in self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._by_id or key in self._by_path

    @property
    def roots(self) -> tuple[Topic, ...]:
        """The top-level topics, in file order."""
        return self._roots

    @property
    def ids(self) -> tuple[int, ...]:
        """Every id, ascending."""
        return self._order

    def get(self, key: int | str) -> Topic:
        """The topic with id ``key`` (an int, or a string of digits) or full path ``key``.

        Raises
        ------
        TaxonomyError
            When there is none; the message names the value.
        """
        if isinstance(key, str) and key.isdigit():
            key = int(key)
        found = self._by_id.get(key) if isinstance(key, int) else self._by_path.get(key)
        if found is None:
            raise TaxonomyError(f"{key!r} is not a Topics v2 topic; expected an id such as 299 or a full path "
                                "such as '/Sports/Basketball'")
        return found

    def by_id(self, topic_id: int) -> Topic:
        """The topic with id ``topic_id``."""
        return self.get(int(topic_id))

    def by_path(self, path: str) -> Topic:
        """The topic whose full path is ``path``."""
        found = self._by_path.get(path)
        if found is None:
            raise TaxonomyError(f"{path!r} is not a Topics v2 path; expected a full path such as '/Sports/Basketball'")
        return found

    def ancestors(self, key: int | str) -> list[Topic]:
        """The topic and its ancestors, the topic first and its top-level topic last."""
        topic = self.get(key)
        chain = [topic]
        while topic.parent is not None:
            topic = self._by_id[topic.parent]
            chain.append(topic)
        return chain

    def top_level(self, key: int | str) -> Topic:
        """The top-level ancestor (one of the 22) of a topic; a top-level topic is its own."""
        return self.ancestors(key)[-1]

    def at_level(self, key: int | str, level: int) -> Topic:
        """The ancestor at ``level`` (1 = top level); the topic itself when it is at or above ``level``."""
        if not isinstance(level, int) or level < 1:
            raise TaxonomyError(f"level is {level!r}; expected an integer >= 1 (1 = the top-level topics)")
        chain = self.ancestors(key)
        return next(t for t in chain if t.level <= level)

    def descendants(self, key: int | str) -> list[Topic]:
        """Every topic under ``key`` (not itself), depth first in file order."""
        out: list[Topic] = []
        stack = list(reversed(self.get(key).children))
        while stack:
            topic = self._by_id[stack.pop()]
            out.append(topic)
            stack.extend(reversed(topic.children))
        return out

    def rollup(self, distribution: Mapping[str, float], level: int = 1) -> dict[str, float]:
        """Move a distribution over full topics (keyed by path) up to ``level``.

        Each topic's mass goes to its ancestor at ``level`` (a topic above ``level`` keeps its own);
        keys that are not topics (such as ``other``) are kept as they are. The total is unchanged.
        The result is sorted by mass, largest first (ties by name).
        """
        out: dict[str, float] = {}
        for key, mass in distribution.items():
            target = self.at_level(key, level).path if key in self._by_path else key
            out[target] = out.get(target, 0.0) + float(mass)
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def subtree_totals(self, distribution: Mapping[str, float]) -> dict[str, float]:
        """Every topic touched, with its own mass plus all its descendants' (a parent includes its children).

        Keys that are not topics are kept as they are.
        """
        out: dict[str, float] = {}
        for key, mass in distribution.items():
            chain = [t.path for t in self.ancestors(key)] if key in self._by_path else [key]
            for path in chain:
                out[path] = out.get(path, 0.0) + float(mass)
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def taxonomy(self) -> Taxonomy:
        """The model vocabulary: ``other``, then every topic's path in ascending id order."""
        return Taxonomy([self._by_id[i].path for i in self._order])


@lru_cache(maxsize=1)
def topics() -> TopicTree:
    """The packaged Topics taxonomy v2 (read once per process)."""
    text = resources.files("vane.shared").joinpath(TOPICS_RESOURCE).read_text(encoding="utf-8")
    return TopicTree.from_tsv(text, TOPICS_RESOURCE)


def topics_taxonomy() -> Taxonomy:
    """The ``builtin:topics`` vocabulary (see :meth:`TopicTree.taxonomy`)."""
    return topics().taxonomy()
