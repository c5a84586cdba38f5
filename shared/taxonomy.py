"""The category vocabulary that the model's inputs and heads are indexed by."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from vane.shared.errors import TaxonomyError
from vane.shared.events import OTHER
from vane.shared.jsonfile import read_json, write_json

TAXONOMY_FORMAT = "vane.taxonomy/1"


class Taxonomy:
    """An ordered category vocabulary whose index 0 is the ``other`` slot.

    Every category not in the vocabulary maps to ``other``. The version is a
    content hash, so two taxonomies with the same categories in the same order
    have the same version on every machine.

    Parameters
    ----------
    categories : sequence of str
        Category names in index order, without ``other`` (it is added first).
    """

    __slots__ = ("_index", "_names", "_version")

    def __init__(self, categories: Sequence[str]) -> None:
        names = [OTHER]
        for cat in categories:
            if not isinstance(cat, str) or not cat.strip():
                raise TaxonomyError(f"taxonomy category {cat!r} is not a non-empty string")
            if cat == OTHER:
                continue
            if cat in names:
                raise TaxonomyError(f"taxonomy category {cat!r} appears twice")
            names.append(cat)
        self._names: tuple[str, ...] = tuple(names)
        self._index = {name: i for i, name in enumerate(self._names)}
        digest = hashlib.sha256(json.dumps(self._names, ensure_ascii=False).encode()).hexdigest()
        self._version = digest[:16]

    @classmethod
    def from_counts(cls, counts: Counter[str] | dict[str, int], max_size: int = 256) -> Taxonomy:
        """The ``max_size - 1`` most frequent categories (ties by name), plus ``other``."""
        if max_size < 2:
            raise TaxonomyError(f"max_size is {max_size}; expected at least 2")
        ranked = sorted(((-n, c) for c, n in counts.items() if c != OTHER))
        return cls([c for _, c in ranked[: max_size - 1]])

    @classmethod
    def from_events(cls, categories: Iterable[Iterable[str]], max_size: int = 256) -> Taxonomy:
        """Build from the category lists of many events."""
        counts: Counter[str] = Counter()
        for cats in categories:
            counts.update(cats)
        return cls.from_counts(counts, max_size)

    @property
    def names(self) -> tuple[str, ...]:
        """All names in index order, ``other`` first."""
        return self._names

    @property
    def version(self) -> str:
        """A 16-hex-digit content hash."""
        return self._version

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Taxonomy) and other._names == self._names

    def __hash__(self) -> int:
        return hash(self._names)

    def __repr__(self) -> str:
        return f"Taxonomy({len(self)} categories, version={self._version})"

    def index(self, name: str) -> int:
        """The index of ``name``, or 0 (``other``) when it is not in the vocabulary."""
        return self._index.get(name, 0)

    def indices(self, names: Iterable[str]) -> list[int]:
        """Distinct indices of ``names`` in first-seen order."""
        out: list[int] = []
        for name in names:
            i = self._index.get(name, 0)
            if i not in out:
                out.append(i)
        return out

    def name(self, index: int) -> str:
        """The category name at ``index``."""
        return self._names[index]

    def to_dict(self) -> dict[str, object]:
        return {"format": TAXONOMY_FORMAT, "version": self._version, "categories": list(self._names[1:])}

    @classmethod
    def from_dict(cls, data: object) -> Taxonomy:
        if not isinstance(data, dict) or data.get("format") != TAXONOMY_FORMAT:
            raise TaxonomyError(f"not a Vane taxonomy: expected a JSON object with format {TAXONOMY_FORMAT!r}")
        cats = data.get("categories")
        if not isinstance(cats, list):
            raise TaxonomyError(f"taxonomy 'categories' is {cats!r}; expected a list of names")
        tax = cls(cats)
        if "version" in data and data["version"] != tax.version:
            raise TaxonomyError(
                f"taxonomy version {data['version']!r} does not match its content ({tax.version}); the file was edited"
            )
        return tax

    def save(self, path: str | Path) -> None:
        """Write the taxonomy as JSON (atomically)."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        """Read a taxonomy written by :meth:`save`."""
        return cls.from_dict(read_json(path, "taxonomy", TaxonomyError))
