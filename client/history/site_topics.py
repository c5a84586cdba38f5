"""Topics of a URL from curated site rules: :class:`SiteTopics` and ``site_topics.json``.

The packaged file maps hosts (and ``host/path-prefix``) of well-known sites to Topics v2 ids
(:mod:`vane.shared.topics`); its ``_notice`` says how it was written. A URL gets the topics of the
path sections it contains (``/sport/`` anywhere in the path) and those of the most specific site
rule (on a news site the sections first, else the site first): a ``host/prefix`` rule whose prefix
starts the path beats its host, and a
longer host beats a shorter one (``news.google.com`` beats ``google.com``). A host matches itself and
its subdomains (``m.youtube.com`` → ``youtube.com``). Category names are the topics' full paths.

A user file in the same format is merged over the packaged one, site by site and section by section.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from vane.client.history.rules import CategoryRules, load_rules
from vane.shared.errors import ConfigError, TaxonomyError
from vane.shared.events import OTHER
from vane.shared.taxonomy import Taxonomy
from vane.shared.topics import topics

#: The packaged curated rules.
SITE_TOPICS_PATH = Path(__file__).with_name("site_topics.json")
SITE_TOPICS_FORMAT = "vane.site-topics/1"


@dataclass(frozen=True)
class SiteTopics:
    """Curated rules that give a URL its Topics ids. Build one with :func:`load_site_topics`.

    Attributes
    ----------
    hosts : Mapping[str, tuple[int, ...]]
        Host → topic ids (the rule keys without a path).
    prefixes : Mapping[str, Mapping[str, tuple[int, ...]]]
        Host → path prefix (``/maps``) → topic ids.
    sections : Mapping[str, tuple[int, ...]]
        Path section such as ``/sport/`` → topic ids, for any host.
    """

    hosts: Mapping[str, tuple[int, ...]]
    prefixes: Mapping[str, Mapping[str, tuple[int, ...]]]
    sections: Mapping[str, tuple[int, ...]]

    def site_ids(self, host: str, path: str = "/") -> tuple[int, ...]:
        """The ids of the most specific site rule for ``host`` and ``path``; empty when none matches."""
        labels = host.lower().rstrip(".").split(".")
        lowered = path.lower() or "/"
        for i in range(len(labels)):
            candidate = ".".join(labels[i:])
            by_prefix = self.prefixes.get(candidate)
            if by_prefix:
                for prefix in sorted(by_prefix, key=len, reverse=True):
                    if lowered == prefix or lowered.startswith(prefix + "/"):
                        return by_prefix[prefix]
            found = self.hosts.get(candidate)
            if found is not None:
                return found
        return ()

    def ids(self, url: str) -> tuple[int, ...]:
        """The site's ids and the path sections' (in rule order); empty when nothing matches.

        On a news site (or an unknown one) the sections come first: ``/sport/`` on ``bbc.co.uk`` says
        more than the host. On a topical site the site comes first: ``/news/`` on ``nba.com`` is news
        about basketball.
        """
        parts = urlsplit(url)
        segments = "/" + parts.path.lower().strip("/") + "/"
        sections = [i for section, ids in self.sections.items() if section in segments for i in ids]
        site = list(self.site_ids(parts.hostname or "", parts.path))
        tree = topics()
        news_site = all(tree.top_level(i).path == "/News" for i in site)
        return tuple(dict.fromkeys([*sections, *site] if news_site else [*site, *sections]))

    def topics(self, url: str) -> tuple[str, ...]:
        """The full paths of :meth:`ids`; empty when nothing matches."""
        tree = topics()
        return tuple(tree.by_id(i).path for i in self.ids(url))

    def categorize(self, url: str) -> tuple[str, ...]:
        """:meth:`topics`, or ``("other",)`` when nothing matches (the importer's categories)."""
        return self.topics(url) or (OTHER,)

    def __len__(self) -> int:
        return len(self.hosts) + sum(len(p) for p in self.prefixes.values())


def _error(source: Path, what: str, value: object, expected: str) -> ConfigError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ConfigError(f"site topics file {source}: {what} is {shown}; expected {expected}")


def _no_duplicates(source: Path):  # type: ignore[no-untyped-def]
    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                raise _error(source, "a key that appears twice", key, "each host or section once")
            seen[key] = value
        return seen
    return hook


def _topic_ids(source: Path, where: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _error(source, where, value, "a non-empty list of Topics v2 ids")
    ids: list[int] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise _error(source, f"an id of {where}", item, "an integer Topics v2 id such as 299")
        try:
            topics().by_id(item)
        except TaxonomyError:
            raise _error(source, f"an id of {where}", item, "an id of the Topics v2 taxonomy") from None
        ids.append(item)
    return tuple(dict.fromkeys(ids))


def _parse(source: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, dict[str, tuple[int, ...]]],
                                  dict[str, tuple[int, ...]]]:
    try:
        data = json.loads(source.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates(source))
    except OSError as exc:
        raise ConfigError(f"site topics file {source} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"site topics file {source} is not valid JSON ({exc}); fix the syntax") from None
    if not isinstance(data, dict) or data.get("format") != SITE_TOPICS_FORMAT:
        raise _error(source, "the top level", data if not isinstance(data, dict) else data.get("format"),
                     f"a JSON object with format {SITE_TOPICS_FORMAT!r}")
    unknown = sorted(set(data) - {"_notice", "format", "taxonomy", "sites", "sections"})
    if unknown:
        raise _error(source, "the key", unknown[0], "one of _notice, format, taxonomy, sites, sections")
    sites = data.get("sites", {})
    if not isinstance(sites, dict):
        raise _error(source, "'sites'", sites, "an object of host → list of ids")
    hosts: dict[str, tuple[int, ...]] = {}
    prefixes: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, value in sites.items():
        host, slash, prefix = key.strip().lower().partition("/")
        host = host.lstrip("*.").rstrip(".")
        if not host or "." not in host or " " in host:
            raise _error(source, "a site", key, "a host name such as 'bbc.co.uk', optionally with '/path'")
        ids = _topic_ids(source, f"site {key!r}", value)
        if slash and prefix.strip("/"):
            prefixes.setdefault(host, {})["/" + prefix.strip("/")] = ids
        else:
            hosts[host] = ids
    sections_raw = data.get("sections", {})
    if not isinstance(sections_raw, dict):
        raise _error(source, "'sections'", sections_raw, "an object of '/section/' → list of ids")
    sections: dict[str, tuple[int, ...]] = {}
    for section, value in sections_raw.items():
        if not section.startswith("/") or not section.endswith("/") or len(section) < 3:
            raise _error(source, "the path section", section, "a section written like '/sport/'")
        sections[section.lower()] = _topic_ids(source, f"section {section!r}", value)
    return hosts, prefixes, sections


@lru_cache(maxsize=1)
def _packaged() -> SiteTopics:
    hosts, prefixes, sections = _parse(SITE_TOPICS_PATH)
    return SiteTopics(hosts, prefixes, sections)


def load_site_topics(path: str | os.PathLike[str] | None = None) -> SiteTopics:
    """The curated site rules: the packaged file, with a user file (same format) merged over it.

    Raises
    ------
    ConfigError
        The file is missing, not JSON, repeats a key, or names an id that is not a Topics v2 topic;
        the message names the file, the entry and what was expected.
    """
    packaged = _packaged()
    if path is None:
        return packaged
    hosts, prefixes, sections = _parse(Path(path))
    merged_prefixes = {host: dict(rules) for host, rules in packaged.prefixes.items()}
    for host, rules in prefixes.items():
        merged_prefixes.setdefault(host, {}).update(rules)
    return SiteTopics({**packaged.hosts, **hosts}, merged_prefixes, {**packaged.sections, **sections})


def _is_site_topics_file(path: str | os.PathLike[str]) -> bool:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False  # load_rules names the problem
    return isinstance(data, dict) and data.get("format") == SITE_TOPICS_FORMAT


def choose_rules(rules: CategoryRules | SiteTopics | str | os.PathLike[str] | None = None,
                 taxonomy: Taxonomy | None = None) -> CategoryRules | SiteTopics:
    """The rules an import uses: Topics (the default for browsing) unless the store speaks another vocabulary.

    ``rules`` given as rules is used as is; as a file, its ``format`` decides (a ``vane.site-topics/1``
    file is merged over the curated Topics rules, any other over the older ``history_rules.json``).
    With no rules, a store pinned to a taxonomy without any Topics path (such as ``builtin:browsing``)
    keeps getting the older coarse categories; every other store gets Topics.
    """
    if isinstance(rules, (CategoryRules, SiteTopics)):
        return rules
    if rules is not None:
        return load_site_topics(rules) if _is_site_topics_file(rules) else load_rules(rules)
    tree = topics()
    if taxonomy is not None and not any(name in tree for name in taxonomy.names[1:]):
        return load_rules(None)
    return load_site_topics()
