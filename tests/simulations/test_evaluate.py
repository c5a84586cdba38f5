"""The evaluation protocol: end to end on real slices, determinism, the split, the sampled item metric, the blend."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from vane.shared.blend import MIX_FIELDS, BlendCase
from vane.shared.events import Event
from vane.simulations.baselines import BASELINES
from vane.simulations.candidates import sample_candidates, sampled_item_rank
from vane.simulations.datasets import MOVIELENS_DIR, TAOBAO_PATH
from vane.simulations.evaluate import EvaluationConfig, prepare, run_evaluation
from vane.simulations.split import temporal_split

pytestmark = pytest.mark.timeout(1200)

FAST = {"epochs": 1, "local_epochs": 1, "fed_local_epochs": 1, "rounds": 2, "ranker_rounds": 2, "num_cpus": 2}


def _event(item: str, cat: str, t: int) -> Event:
    return Event(item, (cat,), datetime.fromtimestamp(1_700_000_000 + 60 * t, tz=UTC), "view", None)


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "path", "methods"), [
    ("taobao", TAOBAO_PATH, None),  # every method, the Flower federation included
    ("movielens", MOVIELENS_DIR, (*BASELINES, "local-lstm", "centralised-lstm")),
])
def test_short_evaluation_on_real_slice_writes_every_output(tmp_path, dataset, path, methods):
    if not path.exists():
        pytest.skip(f"{path} is missing")
    pytest.importorskip("tensorflow")
    if methods is None:
        pytest.importorskip("ray")
    config = EvaluationConfig(dataset, max_users=15, **FAST, **({"methods": methods} if methods else {}))

    results = run_evaluation(config, tmp_path)

    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["methods"]) == set(config.methods)
    for name, metrics in saved["methods"].items():
        for key in ("hr@1", "hr@5", "hr@10", "ndcg@10", "mrr", "roc_auc", "item_hr@10", "item_ndcg@10"):
            assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0, (name, key)
        assert metrics["hr@1"] <= metrics["hr@5"] <= metrics["hr@10"]
        assert saved["wall_seconds"][name] > 0
    assert 0.0 <= saved["taxonomy"]["test_share_outside_taxonomy"] <= 1.0
    report = (tmp_path / "report.md").read_text()
    assert all(f"| {name} |" in report for name in config.methods)
    assert (tmp_path / "metrics.png").stat().st_size > 1000
    if "federated-lstm" in config.methods:
        assert (tmp_path / "federated_rounds.png").stat().st_size > 1000
        assert [r["round"] for r in results["federated_rounds"]] == [0, 1, 2]
        # The federated LSTM answers with the blend its own federated evaluation picked, not a central one.
        fed = saved["methods"]["federated-lstm"]
        assert fed["mix"] == results["federated_rounds"][-1]["mix"]
        assert fed["mix_source"].startswith("picked by federated evaluation")


@pytest.mark.slow
def test_same_seed_gives_the_same_metrics_on_synthetic(tmp_path):
    pytest.importorskip("tensorflow")
    config = EvaluationConfig("synthetic", max_users=12, methods=(*BASELINES, "centralised-lstm"), **FAST)

    first = run_evaluation(config, tmp_path / "a")["methods"]
    second = run_evaluation(config, tmp_path / "b")["methods"]

    for name in config.methods:
        for key, value in first[name].items():
            if key not in ("train_seconds",):
                assert second[name][key] == value, (name, key)
    assert (tmp_path / "a" / "drift.png").exists()


@pytest.mark.parametrize("dataset", ["synthetic", "taobao", "movielens"])
def test_no_test_event_precedes_any_training_event_of_its_user(dataset):
    if (dataset == "taobao" and not TAOBAO_PATH.exists()) or (dataset == "movielens" and not MOVIELENS_DIR.exists()):
        pytest.skip("dataset missing")
    _, split, taxonomy = prepare(EvaluationConfig(dataset, max_users=60))

    for uid in split.evaluated_users:
        last_train = max(ev.unix_time for ev in split.train[uid])
        assert min(ev.unix_time for ev in split.test[uid]) >= last_train
        if split.val[uid]:
            assert min(ev.unix_time for ev in split.val[uid]) >= last_train
    train_cats = {c for events in split.train.values() for ev in events for c in ev.categories}
    assert set(taxonomy.names[1:]) <= train_cats


def test_sampled_rank_counts_ties_against_the_true_item():
    assert sampled_item_rank(np.array([0.5, 0.6, 0.5, 0.1])) == 3.0
    assert sampled_item_rank(np.array([0.9, 0.6, 0.5, 0.1])) == 1.0


def test_candidates_hold_the_true_item_first_and_distinct_popular_others():
    users = {
        "a": [_event(f"i{t % 7}", "x" if t % 2 else "y", t) for t in range(20)],
        "b": [_event(f"j{t % 5}", "z", t) for t in range(20)],
    }
    split = temporal_split(users, test_frac=0.1, val_frac=0.1)

    candidates = sample_candidates(split, seed=3, num_candidates=8)

    test_items = [ev.item_id for uid in split.evaluated_users for ev in split.test[uid]]
    assert candidates.candidates.shape == (len(test_items), 8)
    assert [candidates.items[row[0]] for row in candidates.candidates] == test_items
    assert all(len(set(row.tolist())) == 8 for row in candidates.candidates)
    # The true item was seen just before ("i..." repeats every 7 events), so it gets a recency bonus.
    assert candidates.tie_break[0, 0] > candidates.tie_break[0, 1:].min()


def test_compact_blend_ranks_like_the_tracker(tmp_path):
    from vane.client.predictor import Mix
    from vane.client.tracker import InterestTracker

    events = [_event(f"i{t}", "abcde"[(t * t) % 5], t) for t in range(40)]
    mix = Mix(model=0.0, recent=0.3, profile=0.2, transitions=0.1, last=0.4)
    with InterestTracker.open(tmp_path / "s.store", key=b"k" * 32, mix=mix) as tracker:
        tracker.record_many(events)
        expected = [cat for cat, _ in tracker.predict(k=10).next_interest]
        personal = tracker.personal_state
        recent, shares, transitions = personal.distributions()
        last = {c: 1.0 / len(personal.transitions.last) for c in personal.transitions.last}

    case = BlendCase.from_dicts([{}, recent, shares, transitions, last], ["b"])
    scores = case.blend([getattr(mix, f) for f in MIX_FIELDS])
    order = sorted(range(len(case.keys)), key=lambda i: (-scores[i], case.keys[i]))
    assert [case.keys[i] for i in order] == expected
    assert case.rank(scores) == expected.index("b") + 1


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "path"), [("taobao", TAOBAO_PATH), ("movielens", MOVIELENS_DIR)])
def test_short_cli_evaluation_of_chosen_methods_on_a_real_slice(tmp_path, capsys, dataset, path):
    if not path.exists():
        print(f"skipping: {path} is missing")
        pytest.skip(f"{path} is missing")
    pytest.importorskip("lightgbm")
    from vane.client import cli

    chosen = "repeat-last,decayed-frequency+markov,lightgbm-strict,lightgbm-query-time"
    code = cli.run(["sim", "evaluate", "--dataset", dataset, "--out", str(tmp_path), "--max-users", "25",
                    "--methods", chosen])

    assert code == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "results.json").read_text())
    assert list(saved["methods"]) == chosen.split(",")
    for name, metrics in saved["methods"].items():
        assert 0.0 <= metrics["hr@1"] <= metrics["hr@5"] <= 1.0, name
    assert set(saved["slices"]["methods"]) == set(chosen.split(","))
    assert saved["slices"]["best_baseline"] in ("repeat-last", "decayed-frequency+markov")
    assert saved["new_users"]["users"] == 5 and set(saved["new_users"]["overall"]) == set(chosen.split(","))
    report = (tmp_path / "report.md").read_text()
    assert "## Where each method wins" in report and "## New users" in report and "| lightgbm-strict |" in report


def test_unknown_method_is_named_with_the_known_ones(tmp_path, capsys):
    from vane.client import cli

    code = cli.run(["sim", "evaluate", "--dataset", "synthetic", "--out", str(tmp_path), "--methods",
                    "repeat-last,gbdt"])

    err = capsys.readouterr().err
    assert code == 1
    assert "'gbdt'" in err and "lightgbm-strict" in err and "repeat-last" in err


@pytest.mark.slow
def test_short_cli_evaluation_of_the_federated_and_central_ranker(tmp_path, capsys):
    if not TAOBAO_PATH.exists():
        print(f"skipping: {TAOBAO_PATH} is missing")
        pytest.skip(f"{TAOBAO_PATH} is missing")
    from vane.client import cli

    chosen = "repeat-last,federated-ranker,central-ranker"
    code = cli.run(["sim", "evaluate", "--dataset", "taobao", "--out", str(tmp_path), "--max-users", "20",
                    "--methods", chosen, "--ranker-rounds", "2", "--no-new-users"])

    assert code == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "results.json").read_text())
    fed, central = saved["methods"]["federated-ranker"], saved["methods"]["central-ranker"]
    for metrics in (fed, central):
        assert 0.0 < metrics["hr@1"] <= metrics["hr@5"] <= 1.0 and 0.5 < metrics["roc_auc"] <= 1.0
    # every device joins the statistics round; training samples a tenth of them (at least 2) per round
    assert fed["rounds"] == 2 and fed["statistics_devices"] == fed["devices"] == 20
    assert fed["fraction"] == 0.1 and fed["devices_per_round"] == 2
    assert set(saved["slices"]["methods"]) == set(chosen.split(","))
    assert "| federated-ranker |" in (tmp_path / "report.md").read_text()
