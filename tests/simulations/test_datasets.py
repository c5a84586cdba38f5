"""Dataset loaders on the real files, and the temporal split."""

from __future__ import annotations

from pathlib import Path

import pytest
from vane.shared.errors import DatasetError
from vane.simulations.datasets import MOVIELENS_DIR, TAOBAO_PATH, load_dataset, load_movielens, load_taobao
from vane.simulations.split import temporal_split, train_category_counts, train_taxonomy

needs_taobao = pytest.mark.skipif(not TAOBAO_PATH.is_file(), reason="Taobao dataset not present")
needs_movielens = pytest.mark.skipif(not (MOVIELENS_DIR / "ratings.csv").is_file(), reason="MovieLens not present")


@pytest.fixture(scope="module")
def taobao():
    return load_taobao()


@pytest.fixture(scope="module")
def movielens():
    return load_movielens()


def _assert_time_ordered(users):
    for events in users.values():
        stamps = [e.timestamp for e in events]
        assert stamps == sorted(stamps)


@needs_taobao
def test_taobao_counts_complete_and_malformed_rows():
    dataset = load_taobao(official_window=False)

    assert dataset.stats["rows"] == 84_475
    assert dataset.stats["skipped_malformed"] == 1
    assert dataset.stats["users"] == 815
    assert dataset.num_events == 84_475


@needs_taobao
def test_taobao_window_filter_counts_outside_rows(taobao):
    assert taobao.stats["outside_window"] == 35
    assert taobao.num_events == 84_475 - 35


@needs_taobao
def test_taobao_maps_behaviours_and_categories(taobao):
    first = taobao.users["1"][0]
    kinds = {e.kind for events in taobao.users.values() for e in events}

    assert kinds == {"click", "cart", "favorite", "purchase"}
    assert first.item_id.isdigit() and len(first.categories) == 1 and first.categories[0].isdigit()


@needs_taobao
def test_taobao_events_are_time_ordered(taobao):
    _assert_time_ordered(taobao.users)


@needs_taobao
def test_taobao_max_users_keeps_first_users():
    dataset = load_taobao(max_users=3)

    assert len(dataset.users) == 3 and "1" in dataset.users


@needs_movielens
def test_movielens_counts(movielens):
    assert movielens.stats["rows"] == 100_836
    assert movielens.num_events == 100_836
    assert len(movielens.users) == 610


@needs_movielens
def test_movielens_genres_and_title(movielens):
    toy_story = next(e for events in movielens.users.values() for e in events if e.item_id == "1")

    assert toy_story.title == "Toy Story (1995)"
    assert toy_story.categories == ("Adventure", "Animation", "Children", "Comedy", "Fantasy")
    assert toy_story.kind == "rate"


@needs_movielens
def test_movielens_no_genres_maps_to_other(movielens):
    counts = movielens.category_counts()

    assert "(no genres listed)" not in counts
    assert counts["other"] > 0


@needs_movielens
def test_movielens_events_are_time_ordered(movielens):
    _assert_time_ordered(movielens.users)


def test_missing_taobao_file_names_the_path(tmp_path: Path):
    missing = tmp_path / "nope.csv"

    with pytest.raises(DatasetError, match=r"nope\.csv"):
        load_taobao(missing)


def test_missing_movielens_folder_names_the_path(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"ratings\.csv"):
        load_movielens(tmp_path)


def test_movielens_malformed_header_is_rejected(tmp_path: Path):
    (tmp_path / "ratings.csv").write_text("user,movie,stars,time\n1,1,4.0,964982703\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Comedy\n")

    with pytest.raises(DatasetError, match="malformed header"):
        load_movielens(tmp_path)


def test_taobao_small_file_skips_bad_rows_and_sorts(tmp_path: Path):
    path = tmp_path / "ub.csv"
    path.write_text(
        "7,11,3,pv,1511800000\n7,12,4,buy,1511700000\n7,13,4,zap,1511700000\n8,14,5,fav,1511750000\n8,15,5,cart\n"
    )

    dataset = load_taobao(path)

    assert dataset.stats["skipped_malformed"] == 2
    assert [e.item_id for e in dataset.users["7"]] == ["12", "11"]
    assert [e.kind for e in dataset.users["7"]] == ["purchase", "click"]
    assert dataset.users["8"][0].kind == "favorite"


def test_load_dataset_dispatches_and_rejects_unknown_names():
    synthetic = load_dataset("synthetic", num_users=3, events_per_user=(30, 40))

    assert synthetic.name == "synthetic" and len(synthetic.users) == 3
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("netflix")


@needs_taobao
def test_split_never_tests_before_training(taobao):
    split = temporal_split(taobao.users, test_frac=0.1, val_frac=0.1)

    for uid in split.evaluated_users:
        latest_train = max(e.timestamp for e in split.train[uid])
        latest_val = max((e.timestamp for e in split.val[uid]), default=latest_train)
        assert min(e.timestamp for e in split.test[uid]) >= max(latest_train, latest_val)


def test_split_sizes_and_short_users_train_only():
    users = load_dataset("synthetic", num_users=2, events_per_user=(100, 100)).users
    users["short"] = users["u0000"][:4]

    split = temporal_split(users, test_frac=0.1, val_frac=0.1, min_train=5)

    assert (len(split.train["u0000"]), len(split.val["u0000"]), len(split.test["u0000"])) == (80, 10, 10)
    assert split.train_only_users == 1 and "short" not in split.test
    assert split.history("u0000") == users["u0000"][:90]


def test_train_category_counts_ignore_test_events():
    users = load_dataset("synthetic", num_users=2, events_per_user=(50, 50)).users
    split = temporal_split(users)

    counts = train_category_counts(split)

    assert sum(counts.values()) == sum(len(v) for v in split.train.values())
    assert set(train_taxonomy(split).names[1:]) == set(counts)
