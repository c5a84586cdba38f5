"""Categories of a URL from host and path rules: :class:`CategoryRules` and ``history_rules.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from vane.shared.errors import ConfigError
from vane.shared.events import OTHER

#: The packaged default rules (hosts and path sections per category).
DEFAULT_RULES_PATH = Path(__file__).with_name("history_rules.json")


@dataclass(frozen=True)
class CategoryRules:
    """Host and URL-path rules that give a URL its categories.

    Build one with :func:`load_rules`.

    Attributes
    ----------
    hosts : Mapping[str, str]
        Host name → category; a host also matches its subdomains.
    paths : Mapping[str, str]
        Path section such as ``/sport/`` → category.
    """

    hosts: Mapping[str, str]
    paths: Mapping[str, str]

    def host_category(self, host: str) -> str | None:
        """The category of the most specific rule host that ``host`` equals or is a subdomain of."""
        labels = host.lower().rstrip(".").split(".")
        for i in range(len(labels)):
            category = self.hosts.get(".".join(labels[i:]))
            if category is not None:
                return category
        return None

    def categorize(self, url: str) -> tuple[str, ...]:
        """Path categories (in rule order), then the host category; ``("other",)`` when none match."""
        parts = urlsplit(url)
        segments = "/" + parts.path.lower().strip("/") + "/"
        found = [category for section, category in self.paths.items() if section in segments]
        host_category = self.host_category(parts.hostname or "")
        if host_category is not None:
            found.append(host_category)
        return tuple(dict.fromkeys(found)) or (OTHER,)


def _rules_error(source: Path, what: str, value: object, expected: str) -> ConfigError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ConfigError(
        f"history rules file {source}: {what} is {shown}; expected {expected}. "
        f"Fix the file, or remove it to use the defaults in {DEFAULT_RULES_PATH.name}"
    )


def _clean_rule_host(source: Path, category: str, host: object) -> str:
    if not isinstance(host, str) or not host.strip(" .*"):
        raise _rules_error(source, f"a host of category {category!r}", host, "a host name such as 'bbc.co.uk'")
    return host.strip().lower().lstrip("*.").rstrip(".")


def _parse_rules(source: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Read and validate one rules file into (host → category, section → category)."""
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"history rules file {source} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"history rules file {source} is not valid JSON ({exc}); fix the syntax") from None
    if not isinstance(data, dict):
        raise _rules_error(source, "the top level", data, "a JSON object with 'hosts' and 'paths'")
    unknown = sorted(set(data) - {"_comment", "hosts", "paths"})
    if unknown:
        raise _rules_error(source, "the key", unknown[0], "one of '_comment', 'hosts', 'paths'")
    host_lists = data.get("hosts", {})
    if not isinstance(host_lists, dict):
        raise _rules_error(source, "'hosts'", host_lists, "an object of category → list of hosts")
    hosts: dict[str, str] = {}
    for category, names in host_lists.items():
        if not category.strip():
            raise _rules_error(source, "a category name in 'hosts'", category, "a non-empty string")
        if not isinstance(names, list):
            raise _rules_error(source, f"'hosts.{category}'", names, "a list of host names")
        for name in names:
            hosts[_clean_rule_host(source, category, name)] = category
    sections = data.get("paths", {})
    if not isinstance(sections, dict):
        raise _rules_error(source, "'paths'", sections, "an object of '/section/' → category")
    paths: dict[str, str] = {}
    for section, category in sections.items():
        if not section.startswith("/") or not section.endswith("/") or len(section) < 3:
            raise _rules_error(source, "the path section", section, "a section written like '/sport/'")
        if not isinstance(category, str) or not category.strip():
            raise _rules_error(source, f"'paths.{section}'", category, "a category name")
        paths[section.lower()] = category.strip()
    return hosts, paths


@lru_cache(maxsize=1)
def _default_rules() -> CategoryRules:
    hosts, paths = _parse_rules(DEFAULT_RULES_PATH)
    return CategoryRules(hosts, paths)


def load_rules(path: str | os.PathLike[str] | None = None) -> CategoryRules:
    """Load the category rules: the packaged defaults, with a user file merged over them.

    Parameters
    ----------
    path : str or Path or None, default None
        A user rules file in the format of ``history_rules.json``. Its hosts
        override the defaults host by host, its path sections section by
        section. None gives the defaults alone.

    Returns
    -------
    CategoryRules

    Raises
    ------
    ConfigError
        The file is missing, unreadable, not JSON, or has a malformed entry;
        the message names the file, the entry and what was expected.
    """
    defaults = _default_rules()
    if path is None:
        return defaults
    hosts, paths = _parse_rules(Path(path))
    return CategoryRules({**defaults.hosts, **hosts}, {**defaults.paths, **paths})
