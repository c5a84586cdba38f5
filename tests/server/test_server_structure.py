"""The server's modules form no import cycle, its settings stay light, and both sides agree on the round configs."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
from test_architecture import imports_of, library_files, module_name


def _server_import_graph() -> dict[str, set[str]]:
    """Every server module → the server modules it imports (module level and inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in library_files("server"):
        name = module_name(path)
        targets = {i.module for i in imports_of(path) if i.module.startswith("vane.server.")}
        graph[name] = {t for t in targets if t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a package counts as importing its ``__init__``'s imports), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # importing vane.server.privacy.x first runs vane.server.privacy/__init__
            for target in _with_parents(nxt, node, graph):
                if state.get(target) == 1:
                    return [*stack[stack.index(target):], target]
                if target not in state and (found := visit(target)):
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _with_parents(module: str, importer: str, graph: dict[str, set[str]]) -> list[str]:
    """``module`` after the packages Python initialises first (not the importer's own, already running)."""
    parts = module.split(".")
    parents = [".".join(parts[:i]) for i in range(3, len(parts))]
    return [p for p in parents if p in graph and not (importer == p or importer.startswith(p + "."))] + [module]


def test_server_modules_import_each_other_without_a_cycle():
    graph = _server_import_graph()
    assert "vane.server.privacy" in graph and "vane.server.run" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_privacy_and_secagg_no_longer_import_the_server_app():
    graph = _server_import_graph()
    for name in ("vane.server.privacy", "vane.server.privacy.accounting", "vane.server.privacy.wrappers",
                 "vane.server.privacy.secagg", "vane.server.run", "vane.server.config"):
        assert "vane.server.app" not in graph[name], name


def test_the_settings_module_imports_neither_flower_nor_tensorflow():
    code = ("import sys, vane.server.config, vane.server.deploy; "
            "print(sorted(m for m in ('flwr', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


# --- the round configs the server sends are what the client reads ---------------------------
def _bundle():
    pytest.importorskip("flwr")
    from vane.server.bundle import ModelBundle
    from vane.server.config import default_taxonomy
    from vane.shared.spec import ModelSpec
    from vane.shared.weights import Weights

    taxonomy = default_taxonomy()
    spec = ModelSpec(num_categories=len(taxonomy), item_buckets=64, token_buckets=32)
    return ModelBundle(spec, taxonomy, Weights(spec.hash, np.zeros(3, dtype=np.float32)), b"not a model")


def test_the_train_config_reads_back_as_the_same_client_settings():
    from vane.client.app import ClientSettings
    from vane.server.config import ServerSettings
    from vane.server.run import train_config
    from vane.shared.protocol import SPEC_HASH_KEY, TAXONOMY_KEY

    bundle = _bundle()
    settings = ServerSettings(local_epochs=4, learning_rate=0.03, delta_float16=True, seed=9, holdout_fraction=0.2)
    config = train_config(settings, bundle)
    client = ClientSettings.read(config, {})
    assert (client.local_epochs, client.learning_rate, client.delta_float16, client.seed, client.holdout_fraction) == (
        4, 0.03, True, 9, 0.2)
    assert config[SPEC_HASH_KEY] == bundle.spec.hash and TAXONOMY_KEY in config


def test_the_evaluate_config_carries_the_blend_grid_the_client_scores():
    from vane.client.app import ClientSettings
    from vane.server.config import ServerSettings
    from vane.server.run import evaluate_config

    config = evaluate_config(ServerSettings(mix_grid_step=0.5, holdout_fraction=0.3), _bundle())
    client = ClientSettings.read(config, {})
    assert (client.mix_grid_step, client.holdout_fraction) == (0.5, 0.3)
    assert len(client.mix_candidates()) > 1


def test_every_round_setting_the_server_sends_is_a_client_setting():
    from vane.client.app import ClientSettings
    from vane.server.config import ServerSettings
    from vane.server.run import evaluate_config, train_config
    from vane.shared.protocol import SPEC_HASH_KEY, TAXONOMY_KEY, setting_key

    client_keys = {setting_key(f.name) for f in fields(ClientSettings)}
    for config in (train_config(ServerSettings(), _bundle()), evaluate_config(ServerSettings(), _bundle())):
        assert set(config) - {SPEC_HASH_KEY, TAXONOMY_KEY} <= client_keys


def test_server_settings_survive_a_round_trip_through_run_config():
    pytest.importorskip("flwr")
    from vane.server.config import PrivacySettings, SecAggSettings, ServerSettings

    server = ServerSettings(strategy="krum", resume=True, round_timeout=5.0)
    assert ServerSettings.from_run_config(server.to_run_config()) == server
    secagg = SecAggSettings(secure_aggregation=True, secagg_num_shares=4.0)
    from vane.shared.protocol import to_config

    assert SecAggSettings.from_run_config(to_config(secagg)) == secagg
    privacy = PrivacySettings(dp_mode="server", noise_multiplier=1.0, population_size=10, dp_delta=1e-3)
    assert PrivacySettings.from_run_config(to_config(privacy)) == privacy


def test_the_device_learning_rate_decays_by_round_from_the_setting_or_the_spec():
    from vane.shared.errors import ConfigError
    from vane.server.config import ServerSettings
    from vane.server.run import round_learning_rate

    steady = ServerSettings(learning_rate=0.01)
    assert [round_learning_rate(steady, 0.5, r) for r in (1, 2, 9)] == [0.01, 0.01, 0.01]
    assert round_learning_rate(ServerSettings(), 0.5, 3) == 0.0  # 0: the device uses its spec's rate
    halving = ServerSettings(learning_rate=0.01, learning_rate_decay=0.5)
    assert [round_learning_rate(halving, 0.5, r) for r in (1, 2, 3)] == pytest.approx([0.01, 0.005, 0.0025])
    from_spec = ServerSettings(learning_rate_decay=0.5)
    assert round_learning_rate(from_spec, 0.02, 2) == pytest.approx(0.01)
    assert ServerSettings.from_run_config(halving.to_run_config()) == halving
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=f"learning-rate-decay is {bad}"):
            ServerSettings(learning_rate_decay=bad)
