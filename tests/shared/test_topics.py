"""The Topics taxonomy v2 as packaged: the tree, lookups, roll-up, and the ``builtin:topics`` vocabulary."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import pytest
from vane.shared.errors import TaxonomyError
from vane.shared.topic_text import TOP_LEVEL_DESCRIPTIONS, all_topic_texts, topic_text
from vane.shared.topics import N_ROOTS, N_TOPICS, TopicTree, topics, topics_taxonomy
from vane.shared.vocabularies import describe_taxonomy, resolve_taxonomy, taxonomy_name

SOURCE = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "topics-taxonomy-v2" / "taxonomy_v2.tsv"


def test_the_packaged_file_is_the_dataset_file_byte_for_byte_with_its_notice():
    packaged = resources.files("vane.shared").joinpath("topics_taxonomy_v2.tsv").read_bytes()
    assert hashlib.sha256(packaged).hexdigest() == "778d87cde2f5defb35cd91164c66013b9567e047d94fd31a7305bc658882a33a"
    if SOURCE.exists():
        assert packaged == SOURCE.read_bytes()
    notice = resources.files("vane.shared").joinpath("TOPICS_NOTICE").read_text()
    assert "Apache" in notice and "Google LLC" in notice


def test_the_tree_has_469_topics_under_22_roots_and_every_parent_exists():
    tree = topics()
    rows = [line.split("\t") for line in SOURCE.read_text().splitlines()[1:]] if SOURCE.exists() else []
    assert len(tree) == N_TOPICS == 469 and len(tree.roots) == N_ROOTS == 22
    if rows:
        assert {int(i) for i, _ in rows} == set(tree.ids) and {p for _, p in rows} == {t.path for t in tree}
    for topic in tree:
        if topic.parent is None:
            assert topic.level == 1 and topic in tree.roots
        else:
            parent = tree.by_id(topic.parent)
            assert topic.path.rsplit("/", 1)[0] == parent.path and topic.level == parent.level + 1
            assert topic.id in parent.children
    assert sum(len(t.children) for t in tree) == N_TOPICS - N_ROOTS
    assert {r.name for r in tree.roots} >= {"Sports", "News", "Shopping", "Travel & Transportation"}


def test_lookup_by_id_and_path_ancestors_and_top_level():
    tree = topics()
    basketball = tree.by_path("/Sports/Basketball")
    assert tree.get(basketball.id) is basketball and tree.get(str(basketball.id)) is basketball
    assert basketball.name == "Basketball" and basketball.parts == ("Sports", "Basketball")
    pickup = tree.by_path("/Autos & Vehicles/Motor Vehicles (By Type)/Trucks, Vans & SUVs/Pickup Trucks")
    assert [t.level for t in tree.ancestors(pickup.id)] == [4, 3, 2, 1]
    assert tree.top_level(pickup.id).path == "/Autos & Vehicles"
    assert tree.at_level(pickup.path, 2).path == "/Autos & Vehicles/Motor Vehicles (By Type)"
    assert tree.at_level("/Sports", 3).path == "/Sports"
    assert tree.top_level("/News").path == "/News"
    assert {t.path for t in tree.descendants("/News")} == {
        "/News/Business News", "/News/Local News", "/News/Politics", "/News/World News"}
    for bad in (0, 99999, "/Sports/Curling", "sports", "/Sports/"):
        with pytest.raises(TaxonomyError, match="not a Topics v2"):
            tree.get(bad)
    with pytest.raises(TaxonomyError, match="level is 0"):
        tree.at_level(1, 0)


def test_rollup_moves_mass_to_the_ancestor_and_keeps_the_total():
    tree = topics()
    dist = {"/Sports/Basketball": 0.4, "/Sports/Soccer": 0.1, "/Sports": 0.1,
            "/Arts & Entertainment/Music & Audio/Rock Music/Metal (Music)": 0.3, "other": 0.1}
    top = tree.rollup(dist, level=1)
    assert top == pytest.approx({"/Sports": 0.6, "/Arts & Entertainment": 0.3, "other": 0.1})
    assert list(top) == ["/Sports", "/Arts & Entertainment", "other"]
    two = tree.rollup(dist, level=2)
    assert two["/Arts & Entertainment/Music & Audio"] == pytest.approx(0.3) and two["/Sports/Basketball"] == 0.4
    assert sum(two.values()) == pytest.approx(1.0)
    totals = tree.subtree_totals(dist)
    assert totals["/Sports"] == pytest.approx(0.6) and totals["/Sports/Basketball"] == pytest.approx(0.4)
    assert totals["/Arts & Entertainment/Music & Audio/Rock Music"] == pytest.approx(0.3)
    with pytest.raises(TaxonomyError, match="not a Topics v2"):
        tree.get("/Nope")


def test_a_broken_tree_is_refused_naming_the_problem():
    with pytest.raises(TaxonomyError, match="parent '/A' of '/A/B' is not a topic"):
        TopicTree.from_tsv("id\ttopic\n2\t/A/B\n")
    with pytest.raises(TaxonomyError, match="id 1 appears twice"):
        TopicTree.from_tsv("id\ttopic\n1\t/A\n1\t/B\n")
    with pytest.raises(TaxonomyError, match="line 2"):
        TopicTree.from_tsv("id\ttopic\nx\t/A\n")
    with pytest.raises(TaxonomyError, match="header"):
        TopicTree.from_tsv("1\t/A\n")


def test_builtin_topics_is_the_topic_paths_in_id_order():
    tax = resolve_taxonomy("builtin:topics")
    assert tax == topics_taxonomy() and len(tax) == 470 and tax.names[0] == "other"
    assert list(tax.names[1:]) == [topics().by_id(i).path for i in sorted(topics().ids)]
    assert taxonomy_name(tax) == "topics" and describe_taxonomy(tax).startswith("topics (")
    assert resolve_taxonomy("builtin:browsing") != tax  # the older vocabulary stays loadable


def test_every_topic_has_prior_text_and_the_roots_a_description():
    assert set(TOP_LEVEL_DESCRIPTIONS) == {r.path for r in topics().roots}
    texts = all_topic_texts()
    assert len(texts) == N_TOPICS and len(set(texts)) == N_TOPICS
    assert topic_text(topics().by_path("/Sports/Basketball")) == "Basketball. Sports"
    assert topic_text(topics().by_path("/Sports")).startswith("Sports: ")
