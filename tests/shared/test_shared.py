"""The shared contract: events, taxonomy, hashing, time gaps, spec, weights, features."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from vane.shared import (
    Event,
    EventValidationError,
    Featurizer,
    ModelSpec,
    SpecError,
    SpecMismatchError,
    Taxonomy,
    TaxonomyError,
    VaneError,
    Weights,
    WeightsError,
    num_weights,
    weight_layout,
)
from vane.shared.events import dedupe
from vane.shared.features import make_windows, pad_batch
from vane.shared.hashing import item_bucket, stable_hash, token_buckets, tokenize
from vane.shared.timegap import gap_bucket

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def ev(item: str = "i1", cats: object = ("sports",), dt: float = 0.0, **kw: object) -> Event:
    return Event.create(item_id=item, categories=cats, timestamp=T0 + timedelta(seconds=dt), **kw)


# --- Event ---------------------------------------------------------------------------------------


def test_event_round_trips_through_dict_and_json() -> None:
    event = ev(title="Cup final tonight", kind="click", dwell_s=12.5, cats=["sports", "news"])
    assert Event.from_dict(event.to_dict()) == event
    assert Event.from_json(event.to_json()) == event
    assert json.loads(event.to_json())["categories"] == ["sports", "news"]


def test_event_is_frozen() -> None:
    event = ev()
    with pytest.raises(AttributeError):
        event.item_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "expected_words"),
    [
        ("item_id", None, "required"),
        ("item_id", "   ", "non-empty"),
        ("item_id", 3.5, "string"),
        ("timestamp", None, "required"),
        ("timestamp", "yesterday", "ISO-8601"),
        ("timestamp", datetime(2024, 1, 1), "timezone-aware"),
        ("timestamp", float("nan"), "Unix seconds"),
        ("kind", "teleport", "one of"),
        ("dwell_s", -1.0, ">= 0"),
        ("dwell_s", "long", "number"),
        ("categories", 7, "list"),
        ("categories", ["ok", ""], "non-empty"),
        ("title", 5, "string"),
    ],
)
def test_bad_event_field_names_field_value_and_expectation(field: str, value: object, expected_words: str) -> None:
    fields: dict[str, object] = {"item_id": "i1", "categories": ["a"], "timestamp": T0, "kind": "view"}
    fields[field] = value
    with pytest.raises(EventValidationError) as info:
        Event.create(**fields)  # type: ignore[arg-type]
    message = str(info.value)
    assert info.value.field == field
    assert repr(field) in message and expected_words in message
    assert isinstance(info.value, VaneError)


def test_missing_category_maps_to_other_and_missing_dwell_stays_none() -> None:
    event = Event.create(item_id="x", timestamp=T0)
    assert event.categories == ("other",)
    assert event.dwell_s is None
    assert Event.create(item_id="x", categories=[], timestamp=T0).categories == ("other",)


def test_unknown_field_in_dict_is_rejected() -> None:
    data = ev().to_dict() | {"colour": "red"}
    with pytest.raises(EventValidationError, match="colour"):
        Event.from_dict(data)


def test_timestamps_normalise_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    event = Event.create(item_id="x", timestamp=datetime(2024, 1, 1, 13, tzinfo=cet))
    assert event.timestamp == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert Event.create(item_id="x", timestamp=0).timestamp.year == 1970
    assert Event.create(item_id="x", timestamp="2024-01-01T12:00:00Z").timestamp.hour == 12


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("timestamp", datetime(2024, 1, 1), "timezone-aware"),
        ("item_id", 3.5, "string"),
        ("categories", ("ok", 7), "string"),
        ("kind", "teleport", "one of"),
        ("title", b"bytes", "string"),
        ("dwell_s", float("inf"), "finite"),
    ],
)
def test_the_plain_constructor_validates_like_create(field: str, value: object, words: str) -> None:
    fields: dict[str, object] = {"item_id": "i1", "categories": ("a",), "timestamp": T0, "kind": "view"}
    fields[field] = value
    with pytest.raises(EventValidationError, match=words) as info:
        Event(**fields)  # type: ignore[arg-type]
    assert info.value.field == field


def test_the_plain_constructor_normalises_like_create() -> None:
    cet = timezone(timedelta(hours=1))
    built = Event(42, ["b", "a", "b"], datetime(2024, 1, 1, 13, tzinfo=cet), "click", "  Title  ", 3)  # type: ignore[arg-type]
    assert built == Event.create(item_id="42", categories=["b", "a"], timestamp=datetime(2024, 1, 1, 12, tzinfo=UTC),
                                 kind="click", title="Title", dwell_s=3.0)
    assert built.item_id == "42" and built.categories == ("b", "a") and built.timestamp.tzinfo is UTC
    assert Event.from_dict(built.to_dict()) == built


def test_a_mapping_without_kind_is_rejected_as_the_readme_says() -> None:
    with pytest.raises(EventValidationError, match=r"'kind'.*required") as info:
        Event.from_dict({"item_id": "a", "timestamp": T0.isoformat()})
    assert info.value.field == "kind"
    assert Event.create(item_id="a", timestamp=T0).kind == "view"  # the Python default stays


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1500, 6, 1, tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC),
        datetime(3000, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
        "0001-01-01T00:00:00Z",
        "1500-06-01T00:00:00+00:00",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        -1,
        32503680000,
        1e300,
    ],
    ids=str,
)
def test_one_time_range_for_every_timestamp_form(value: object) -> None:
    with pytest.raises(EventValidationError, match="1970-01-01T00:00:00Z") as info:
        Event.create(item_id="x", timestamp=value)
    assert info.value.field == "timestamp"


def test_time_range_edges_are_accepted_in_every_form() -> None:
    last = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert Event.create(item_id="x", timestamp=0).timestamp == datetime(1970, 1, 1, tzinfo=UTC)
    assert Event.create(item_id="x", timestamp="1970-01-01T00:00:00Z").unix_time == 0
    assert Event.create(item_id="x", timestamp=last).timestamp == last
    assert Event.create(item_id="x", timestamp=last.isoformat()).timestamp == last
    assert Event.create(item_id="x", timestamp=last.timestamp()).timestamp == last


def test_iso_timestamps_without_an_offset_are_rejected() -> None:
    with pytest.raises(EventValidationError, match="UTC offset"):
        Event.create(item_id="x", timestamp="2024-01-01T12:00:00")


def test_text_with_lone_surrogates_is_rejected_naming_the_field() -> None:
    for field in ("item_id", "title"):
        fields: dict[str, object] = {"item_id": "x", "timestamp": T0, field: "bad \ud800 text"}
        with pytest.raises(EventValidationError, match="surrogates") as info:
            Event.create(**fields)  # type: ignore[arg-type]
        assert info.value.field == field


def test_future_events_beyond_the_clock_skew_allowance_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    from vane.shared import events

    now = datetime(2026, 6, 1, tzinfo=UTC)
    monkeypatch.setattr(events, "clock", lambda: now.timestamp())
    soon = Event.create(item_id="x", timestamp=now + timedelta(hours=23))
    assert events.check_not_future(soon) is soon
    late = Event.create(item_id="x", timestamp=now + timedelta(hours=25))
    with pytest.raises(EventValidationError, match="clock-skew") as info:
        events.check_not_future(late)
    assert info.value.field == "timestamp"
    assert events.check_not_future(late, now=late.unix_time) is late  # "now" can be given


def test_record_refuses_a_future_event_and_an_unvalidated_one(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from vane.client.tracker import InterestTracker
    from vane.shared import events

    monkeypatch.setattr(events, "clock", lambda: datetime(2026, 6, 1, tzinfo=UTC).timestamp())
    with InterestTracker.open(tmp_path / "s.db", key_file=tmp_path / "k") as tracker:
        tracker.record({"item_id": "a", "categories": ["news"], "timestamp": "2026-05-31T00:00:00Z", "kind": "view"})
        with pytest.raises(EventValidationError, match="3000-01-01"):
            tracker.record({"item_id": "b", "categories": ["poison"], "timestamp": "9999-12-31T00:00:00Z",
                            "kind": "view"})
        with pytest.raises(EventValidationError, match="clock-skew"):
            tracker.record(Event("b", ("poison",), datetime(2999, 1, 1, tzinfo=UTC)))
        with pytest.raises(EventValidationError, match="timezone-aware"):
            tracker.record(Event("c", ("news",), datetime(2026, 5, 31)))
        assert tracker.store.count() == 1
    with InterestTracker.open(tmp_path / "s.db", key_file=tmp_path / "k") as tracker:
        assert [e.item_id for _, e in tracker.store.events()] == ["a"]
        assert tracker.interests(3).top[0].profile_share == pytest.approx(1.0)


def test_dedupe_drops_same_item_within_a_second_only() -> None:
    events = [ev("a", dt=0), ev("a", dt=0.5), ev("a", dt=2.0), ev("b", dt=2.2), ev("a", dt=2.4)]
    assert [e.item_id for e in dedupe(events)] == ["a", "a", "b", "a"]
    assert dedupe(events)[1].unix_time - T0.timestamp() == pytest.approx(2.0)


# --- Taxonomy ------------------------------------------------------------------------------------


def test_taxonomy_has_other_first_and_maps_unknown_to_it() -> None:
    tax = Taxonomy(["sports", "news"])
    assert tax.names == ("other", "sports", "news")
    assert tax.index("news") == 2 and tax.index("cooking") == 0
    assert tax.indices(["news", "cooking", "news", "zzz"]) == [2, 0]


def test_taxonomy_version_is_a_content_hash(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = Taxonomy(["x", "y"]), Taxonomy(["x", "y"])
    assert a.version == b.version and a.version != Taxonomy(["y", "x"]).version
    a.save(tmp_path / "t.json")
    assert Taxonomy.load(tmp_path / "t.json") == a


def test_taxonomy_from_counts_keeps_most_frequent() -> None:
    tax = Taxonomy.from_counts({"a": 5, "b": 9, "c": 1, "d": 5}, max_size=3)
    assert tax.names == ("other", "b", "a")


def test_taxonomy_rejects_duplicates_and_edited_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TaxonomyError, match="twice"):
        Taxonomy(["a", "a"])
    path = tmp_path / "t.json"
    Taxonomy(["a", "b"]).save(path)
    data = json.loads(path.read_text())
    data["categories"].append("c")
    path.write_text(json.dumps(data))
    with pytest.raises(TaxonomyError, match="edited"):
        Taxonomy.load(path)
    with pytest.raises(TaxonomyError, match="does not exist"):
        Taxonomy.load(tmp_path / "missing.json")


# --- Hashing and gaps ----------------------------------------------------------------------------


def test_hashes_are_pinned_values() -> None:
    # Pinned: a change here would silently re-map every trained embedding row.
    assert item_bucket("item-42", 2048) == 1628
    assert item_bucket("https://example.com/", 2048) == 332
    assert stable_hash("hello", 1024, salt=b"token") == 554
    assert token_buckets("Hello, World! Ünïcode 2024", 1024, 6).tolist() == [554, 127, 808, 630, 0, 0]


def test_hashes_are_identical_in_another_process() -> None:
    code = "from vane.shared.hashing import item_bucket; print(item_bucket('item-42', 2048))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == "1628"


def test_tokenize_lowercases_and_splits_unicode() -> None:
    assert tokenize("Zprávy: Česko vyhrálo!") == ["zprávy", "česko", "vyhrálo"]
    assert tokenize(None) == []


def test_gap_buckets_are_log_scale_and_capped() -> None:
    assert gap_bucket(None, 24) == 0
    assert gap_bucket(0.2, 24) == 1
    assert gap_bucket(-5, 24) == 1
    assert gap_bucket(60, 24) == 6
    assert gap_bucket(86400, 24) == 17
    assert gap_bucket(1e12, 24) == 23


# --- ModelSpec and weights -----------------------------------------------------------------------


def test_spec_hash_is_stable_and_sensitive() -> None:
    assert ModelSpec().hash == ModelSpec().hash
    assert ModelSpec(lstm_units=32).hash != ModelSpec().hash
    spec = ModelSpec(num_categories=10)
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"lstm_units": 0}, "lstm_units"),
        ({"optimizer": "rmsprop"}, "sgd, adam"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"window": 2.5}, "integer"),
        ({"num_categories": 1}, ">= 2"),
    ],
)
def test_bad_spec_says_what_was_wrong(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(SpecError, match=words):
        ModelSpec(**kwargs)  # type: ignore[arg-type]


def test_unknown_spec_field_is_refused() -> None:
    with pytest.raises(SpecError, match="unknown ModelSpec field 'units'"):
        ModelSpec.from_dict({"units": 3})


def test_weights_round_trip_named_flat_and_bytes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = ModelSpec(num_categories=5, item_buckets=16, token_buckets=8, lstm_units=4)
    flat = np.random.default_rng(0).normal(size=num_weights(spec)).astype(np.float32)
    weights = Weights.from_flat(spec, flat)
    named = weights.named(spec)
    assert [n for n, _ in weight_layout(spec)] == list(named)
    assert np.array_equal(Weights.from_named(spec, named).flat, flat)
    weights.save(tmp_path / "w.bin")
    loaded = Weights.load(tmp_path / "w.bin")
    assert loaded.spec_hash == spec.hash and np.array_equal(loaded.flat, flat)


def test_weights_from_another_spec_are_refused() -> None:
    spec, other = ModelSpec(num_categories=5), ModelSpec(num_categories=6)
    weights = Weights.from_flat(spec, np.zeros(num_weights(spec), np.float32))
    with pytest.raises(SpecMismatchError, match=f"made for model spec {spec.hash}"):
        weights.named(other)
    with pytest.raises(SpecMismatchError, match="belong to another model spec"):
        Weights.from_flat(other, weights.flat)


def test_corrupt_weights_are_refused() -> None:
    spec = ModelSpec(num_categories=5)
    blob = Weights.from_flat(spec, np.ones(num_weights(spec), np.float32)).to_bytes()
    damaged = blob[:-40] + bytes([blob[-40] ^ 1]) + blob[-39:]
    with pytest.raises(WeightsError, match="corrupt"):
        Weights.from_bytes(damaged)
    with pytest.raises(WeightsError, match="NaN"):
        Weights.from_flat(spec, np.full(num_weights(spec), np.nan, np.float32))


# --- Features ------------------------------------------------------------------------------------


def test_featurizer_encodes_categories_gaps_and_targets() -> None:
    tax = Taxonomy(["sports", "news", "food"])
    spec = ModelSpec(num_categories=len(tax), intensity_horizon=2)
    fz = Featurizer(spec, tax)
    events = [ev("a", ["sports"], 0), ev("b", ["news", "zzz"], 60), ev("c", ["food"], 120), ev("d", ["sports"], 180)]
    f = fz.encode(events)
    assert f.cats[1].tolist()[:2] == [3, 1]  # news+1, other+1
    assert f.gap.tolist() == [0, 6, 6, 6]
    interest, intensity, valid = fz.targets(events)
    assert valid.tolist() == [1, 1, 1, 0]
    assert interest[0].tolist() == [0.5, 0, 0.5, 0]  # next event: news + other
    assert intensity[1].tolist() == [0, 1, 0, 1]  # food, sports in the next two
    assert intensity[3].sum() == 0


def test_featurizer_refuses_taxonomy_of_other_size() -> None:
    with pytest.raises(SpecMismatchError, match="num_categories"):
        Featurizer(ModelSpec(num_categories=9), Taxonomy(["a"]))


def test_windows_and_padding_weight_zero() -> None:
    tax = Taxonomy(["a", "b"])
    spec = ModelSpec(num_categories=3, window=4, batch=3, lstm_units=8)
    fz = Featurizer(spec, tax)
    events = [ev(f"i{i}", ["a" if i % 2 else "b"], i * 10) for i in range(6)]
    interest, intensity, valid = fz.targets(events)
    f, i, n, w = make_windows(fz.encode(events), interest, intensity, valid, spec.window)
    assert f.item.shape == (2, 4) and w.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    batch = pad_batch(f, i, n, w, spec.batch, spec.lstm_units)
    assert batch.features.cats.shape == (3, 4, spec.max_categories_per_event)
    assert batch.weight[2].sum() == 0 and batch.num_examples == 5


def test_a_cut_vocabulary_fits_a_device_until_nine_tenths_of_its_events_fall_outside():
    """A model for another vocabulary is refused; one cut to the common categories is not (Taobao's top 256
    leave more than half of 153 honest users' events outside it)."""
    from vane.shared.artifact import coverage_problem, other_share
    from vane.shared.events import OTHER

    vocabulary = Taxonomy(["a", "b", "c"])
    mostly_rare = [("a",)] * 2 + [("rare",)] * 8 + [(OTHER,)] * 5  # 8 of 10 categorised events unknown
    assert other_share(mostly_rare, vocabulary) == (8, 10)
    assert coverage_problem(mostly_rare, vocabulary) is None
    nearly_all = [("a",)] + [("rare",)] * 19  # 19 of 20 unknown
    problem = coverage_problem(nearly_all, vocabulary)
    assert problem is not None and "19 of this device's 20 categorised events" in problem
    assert coverage_problem([("rare",)] * 9, vocabulary) is None  # too few events to judge
    assert coverage_problem(nearly_all, vocabulary, max_unknown=0.96) is None
