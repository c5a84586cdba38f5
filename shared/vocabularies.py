"""The built-in category vocabularies, named so every side of the path can say which one it uses.

=============  =================================================================================
``topics``     the Topics taxonomy v2 (:mod:`vane.shared.topics`): 469 topics named by their full
               path (``/Sports/Basketball``): the default taxonomy for browsing (history import,
               the categoriser, a deployment and ``vane server export-model``)
``browsing``   the ~13 coarse categories of the older browsing-history rules (the package resource
               ``vane/shared/browsing_taxonomy.json``): still loadable for stores and models made
               with it
``synthetic``  the synthetic population's names (:data:`~vane.shared.synthetic_vocab.SYNTHETIC_CATEGORIES`):
               only for synthetic users, the simulations' default
=============  =================================================================================

A run_config ``taxonomy-file`` of ``builtin:topics``, ``builtin:browsing`` or ``builtin:synthetic`` names one of them
(:func:`resolve_taxonomy`), so a Flower app works on any machine without shipping a file. A taxonomy
is identified everywhere by its content hash, :attr:`Taxonomy.version`; :func:`describe_taxonomy`
shows it with the built-in name when it is one.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from vane.shared.errors import TaxonomyError
from vane.shared.synthetic_vocab import SYNTHETIC_CATEGORIES
from vane.shared.taxonomy import Taxonomy
from vane.shared.topics import topics_taxonomy

#: Prefix of a built-in vocabulary in a ``taxonomy-file`` setting.
BUILTIN_PREFIX = "builtin:"
#: The built-in vocabularies' names.
BUILTIN_NAMES = ("topics", "browsing", "synthetic")
#: The default taxonomy for browsing (history, the browser extension's events, a deployment).
DEFAULT_BROWSING = "builtin:topics"


def browsing_taxonomy() -> Taxonomy:
    """The browsing vocabulary (the categories of the packaged history rules)."""
    raw = resources.files("vane.shared").joinpath("browsing_taxonomy.json").read_text(encoding="utf-8")
    return Taxonomy.from_dict(json.loads(raw))


def synthetic_taxonomy() -> Taxonomy:
    """The synthetic population's vocabulary (for synthetic users only)."""
    return Taxonomy(list(SYNTHETIC_CATEGORIES))


def builtin_taxonomy(name: str) -> Taxonomy:
    """The built-in vocabulary ``name`` (``topics``, ``browsing`` or ``synthetic``).

    Raises
    ------
    TaxonomyError
        For any other name.
    """
    if name == "topics":
        return topics_taxonomy()
    if name == "browsing":
        return browsing_taxonomy()
    if name == "synthetic":
        return synthetic_taxonomy()
    raise TaxonomyError(f"built-in taxonomy {name!r} does not exist; expected one of {', '.join(BUILTIN_NAMES)}")


def resolve_taxonomy(value: str | Path) -> Taxonomy:
    """The taxonomy a setting names: ``builtin:NAME`` or the path of a taxonomy JSON file."""
    text = str(value)
    if text.startswith(BUILTIN_PREFIX):
        return builtin_taxonomy(text[len(BUILTIN_PREFIX):])
    return Taxonomy.load(text)


def taxonomy_name(taxonomy: Taxonomy) -> str | None:
    """The built-in name of ``taxonomy`` when it is one, else None."""
    for name in BUILTIN_NAMES:
        if builtin_taxonomy(name) == taxonomy:
            return name
    return None


def describe_taxonomy(taxonomy: Taxonomy) -> str:
    """``browsing (version 1a2b…, 14 categories)``; ``custom`` when it is not a built-in one."""
    return f"{taxonomy_name(taxonomy) or 'custom'} (version {taxonomy.version}, {len(taxonomy)} categories)"
