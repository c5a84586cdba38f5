"""The curated site rules (``client/history/site_topics.json``) against the Topics taxonomy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vane.client.history.site_topics import SITE_TOPICS_PATH, load_site_topics
from vane.shared.errors import ConfigError
from vane.shared.topics import topics

SPORTS, NEWS = "/Sports", "/News"


def _raw() -> dict:
    pairs_seen: list[str] = []

    def hook(pairs):
        keys = [k for k, _ in pairs]
        pairs_seen.extend(k for k in keys if keys.count(k) > 1)
        return dict(pairs)

    data = json.loads(SITE_TOPICS_PATH.read_text(encoding="utf-8"), object_pairs_hook=hook)
    assert pairs_seen == [], f"repeated keys: {sorted(set(pairs_seen))}"
    return data


def test_the_file_has_a_notice_and_at_least_500_distinct_hosts_with_valid_ids():
    data = _raw()
    assert any("written" in line for line in data["_notice"])
    hosts = [key.split("/", 1)[0] for key in data["sites"]]
    assert len(set(hosts)) >= 500 and len(data["sites"]) == len(set(data["sites"]))
    tree = topics()
    for key, ids in [*data["sites"].items(), *data["sections"].items()]:
        assert ids and all(i in tree.ids for i in ids), key
    assert len(load_site_topics()) == len(data["sites"])


@pytest.mark.parametrize(("url", "expected"), [
    ("https://m.youtube.com/watch?v=1", ("/Arts & Entertainment/TV & Video",)),
    ("https://www.youtube.com/", ("/Arts & Entertainment/TV & Video",)),
    ("https://news.google.com/topics/x", (NEWS,)),  # the longer host wins
    ("https://www.google.com/maps/place/Prague", ("/Travel & Transportation",)),  # host/prefix beats the host
    ("https://www.google.com/mapsearch", ("/Internet & Telecom/Web Services",)),  # a prefix ends at a segment
    ("https://www.bbc.co.uk/sport/football/1", (SPORTS, NEWS)),  # on a news site the section first
    ("https://www.nba.com/news/celtics-win", ("/Sports/Basketball", NEWS)),  # on a topical site the site first
    ("https://unknown.example/sport/1", (SPORTS,)),  # a section alone
    ("https://en.wikipedia.org/wiki/Prague", ("/Jobs & Education/Education",)),
    ("https://www.NETFLIX.com./title/1", ("/Arts & Entertainment/TV & Video/Movie & TV Streaming",)),
    ("https://notyoutube.com/", ("other",)),  # a suffix is not a subdomain
    ("https://unknown-host.example/", ("other",)),
])
def test_hosts_subdomains_prefixes_and_sections(url, expected):
    assert load_site_topics().categorize(url) == expected


def test_top_sites_get_the_topic_their_public_description_gives():
    rules = load_site_topics()
    tree = topics()
    top = {url: tree.top_level(rules.topics(url)[0]).path for url in (
        "https://www.amazon.com/dp/1", "https://www.espn.com/", "https://www.booking.com/", "https://github.com/a",
        "https://www.cnn.com/", "https://www.facebook.com/", "https://www.chase.com/", "https://www.zillow.com/",
        "https://www.indeed.com/", "https://store.steampowered.com/", "https://www.allrecipes.com/")}
    assert list(top.values()) == ["/Shopping", SPORTS, "/Travel & Transportation", "/Computers & Electronics",
                                  NEWS, "/Online Communities", "/Finance", "/Real Estate", "/Jobs & Education",
                                  "/Games", "/Food & Drink"]


def test_a_user_file_is_merged_over_the_packaged_rules(tmp_path: Path):
    user = tmp_path / "mine.json"
    user.write_text(json.dumps({"format": "vane.site-topics/1", "sites": {"github.com": [299], "knit.example": [196]},
                                "sections": {"/knit/": [469]}}))
    rules = load_site_topics(user)
    assert rules.categorize("https://github.com/") == (SPORTS,)
    assert rules.categorize("https://knit.example/knit/x") == ("/Hobbies & Leisure",
                                                               "/Hobbies & Leisure/Art & Craft Supplies")
    assert rules.categorize("https://www.cnn.com/") == (NEWS,)
    assert load_site_topics().categorize("https://github.com/") != (SPORTS,)  # the packaged rules are unchanged


@pytest.mark.parametrize(("text", "named"), [
    ('{"format": "vane.site-topics/1", "sites": {"a.com": [99999]}}', "99999"),
    ('{"format": "vane.site-topics/1", "sites": {"a.com": [1], "a.com": [2]}}', "appears twice"),
    ('{"format": "vane.site-topics/1", "sites": {"a.com": []}}', "non-empty list"),
    ('{"format": "vane.site-topics/1", "sites": {"localhost": [1]}}', "host name"),
    ('{"format": "vane.site-topics/1", "sections": {"sport": [299]}}', "'/sport/'"),
    ('{"format": "vane.site-topics/1", "hosts": {}}', "'hosts'"),
    ('{"sites": {}}', "format"),
    ("{", "not valid JSON"),
])
def test_a_bad_user_file_is_refused_naming_the_entry(tmp_path: Path, text: str, named: str):
    user = tmp_path / "bad.json"
    user.write_text(text)
    with pytest.raises(ConfigError, match=f"site topics file {user}.*") as info:
        load_site_topics(user)
    assert named in str(info.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_site_topics(tmp_path / "missing.json")
