"""One federated run of the ServerApp: strategy, round configs, checkpoints, registry, per-round logs.

:class:`FederationRun` drives a Message-API strategy (:mod:`vane.server.strategies`) over a
Flower :class:`~flwr.serverapp.Grid`. After each round :meth:`FederationRun.after_round`

1. picks the on-device blend from the round's federated evaluation (``mix-grid-step``),
2. records the round log in ``out-dir/metrics.json``,
3. writes a checkpoint and publishes a model version in the registry (with the text encoder's version when
   the model reads text: run_config ``encoder-version``, :func:`vane.server.encoder_registry.run_encoder_version`).

Other ways of running rounds (the SecAgg+ legacy workflow, :mod:`vane.server.privacy.secagg`)
call the same hook.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from vane.server.bundle import ModelBundle, build_bundle, run_taxonomy
from vane.server.checkpoint import CheckpointStore
from vane.server.config import ServerSettings
from vane.server.encoder_registry import run_encoder_version
from vane.server.registry import ModelRegistry
from vane.server.strategies import RoundLog, make_strategy
from vane.server.update_bounds import UpdateBounds
from vane.shared import protocol as p
from vane.shared.blend import MIX_FIELDS, best_candidate, mix_grid
from vane.shared.errors import ConfigError
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

logger = logging.getLogger("vane.server")

#: Called as ``on_round(round, total_rounds, round_log)`` after every round (round 0 = untrained).
RoundCallback = Callable[[int, int, dict[str, Any]], None]
Config = TypeVar("Config", bound=MutableMapping[str, Any])


class RoundStrategy(Protocol):
    """What a run needs of the strategy that runs its rounds: their logs and its checkpoint state."""

    rounds: dict[int, RoundLog]

    def state_arrays(self) -> dict[str, np.ndarray]: ...


@dataclass
class FederationOutcome:
    """What a ServerApp run produced."""

    rounds: list[dict[str, Any]] = field(default_factory=list)
    final_round: int = 0
    weights: Weights | None = None


def train_config(settings: ServerSettings, bundle: ModelBundle) -> ConfigRecord:
    """The config every train message carries: the round settings and the model's identity."""
    return ConfigRecord(
        {
            p.LOCAL_EPOCHS_KEY: settings.local_epochs,
            p.LEARNING_RATE_KEY: settings.learning_rate,
            p.DELTA_FLOAT16_KEY: settings.delta_float16,
            p.SEED_KEY: settings.seed,
            p.HOLDOUT_FRACTION_KEY: settings.holdout_fraction,
            p.TRAIN_PARTS_KEY: settings.train_parts,
            p.SPEC_HASH_KEY: bundle.spec.hash,
            p.TAXONOMY_KEY: json.dumps(bundle.taxonomy.to_dict()),
        }
    )


def evaluate_config(settings: ServerSettings, bundle: ModelBundle) -> ConfigRecord:
    """The config every evaluate message carries: the holdout, the blend grid and the model's identity."""
    return ConfigRecord(
        {
            p.HOLDOUT_FRACTION_KEY: settings.holdout_fraction,
            p.MIX_GRID_STEP_KEY: settings.mix_grid_step,
            p.SPEC_HASH_KEY: bundle.spec.hash,
            p.TAXONOMY_KEY: json.dumps(bundle.taxonomy.to_dict()),
        }
    )


def round_learning_rate(settings: ServerSettings, spec_rate: float, server_round: int) -> float:
    """The client learning rate of ``server_round`` (from 1) under ``learning-rate-decay``; without decay the
    setting as it is (0 leaves the spec's rate to the device)."""
    if settings.learning_rate_decay == 1.0:
        return settings.learning_rate
    base = settings.learning_rate or spec_rate
    return float(base * settings.learning_rate_decay ** max(0, server_round - 1))


class FederationRun:
    """One ServerApp run: strategy, checkpoints, registry, per-round logs.

    Parameters
    ----------
    settings : ServerSettings
    spec, taxonomy, model_blob : optional
        The model to train; by default built from ``spec-file``/``taxonomy-file`` or the synthetic defaults.
    on_round : callable, optional
        Called as ``on_round(round, total_rounds, round_log)`` after every round.
    """

    def __init__(
        self,
        settings: ServerSettings,
        spec: ModelSpec | None = None,
        taxonomy: Taxonomy | None = None,
        model_blob: bytes | None = None,
        on_round: RoundCallback | None = None,
    ) -> None:
        self.settings = settings
        self.out = Path(settings.out_dir)
        self.checkpoints = CheckpointStore(self.out)
        self.registry = ModelRegistry(settings.registry_dir or self.out / "registry")
        self.on_round = on_round
        self.rounds: list[dict[str, Any]] = []
        self.start_round = 0
        self.bundle, state = self._load(spec, taxonomy, model_blob)
        #: The text encoder the published versions record (run_config encoder-version; None without text).
        self.encoder_version = run_encoder_version(self.registry.directory, settings.encoder_version,
                                                   self.bundle.spec.text_dim)
        #: Strategy state of the checkpoint resumed from (empty for a fresh run).
        self.strategy_state = state
        #: The blend picked by the newest federated evaluation (MIX_FIELDS order), sent with later rounds.
        self.mix: list[float] | None = next(
            ([float(r["mix"][f]) for f in MIX_FIELDS] for r in reversed(self.rounds) if r.get("mix")), None)
        #: Config records handed to the strategy once; the picked mix is written into them.
        self.live_configs: list[MutableMapping[str, Any]] = []
        #: Further train-config keys every train message carries (the population statistics, vane.server.analytics).
        self.extra_train_config: dict[str, Any] = {}
        #: Figures of the population statistics shipped with the model, added to every published version.
        self.population_metrics: dict[str, float] = {}
        delta_strategy = make_strategy(
            settings.strategy,
            model_blob=self.bundle.blob,
            model_version=self.bundle.version,
            round_offset=self.start_round,
            fraction_train=settings.fraction_train,
            fraction_evaluate=settings.fraction_evaluate,
            min_train_nodes=settings.min_train_nodes,
            min_evaluate_nodes=settings.min_evaluate_nodes,
            min_available_nodes=settings.min_available_nodes,
            proximal_mu=settings.proximal_mu,
            server_learning_rate=settings.server_learning_rate,
            trim_beta=settings.trim_beta,
            num_malicious_nodes=settings.num_malicious_nodes,
            bounds=UpdateBounds(settings.update_norm_ratio, settings.num_examples_ratio,
                                float(settings.max_num_examples)),
        )
        delta_strategy.load_state_arrays(state)
        #: The strategy that runs the rounds; privacy may wrap or replace it (:mod:`vane.server.privacy`).
        self.strategy: RoundStrategy = delta_strategy

    def _load(
        self, spec: ModelSpec | None, taxonomy: Taxonomy | None, blob: bytes | None
    ) -> tuple[ModelBundle, dict[str, np.ndarray]]:
        s = self.settings
        if s.resume:
            ckpt = self.checkpoints.latest()
            if ckpt is None:
                raise ConfigError(f"resume is set but {str(self.checkpoints.root)!r} holds no checkpoint")
            self.start_round = ckpt.round
            self.rounds = list(ckpt.rounds)
            logger.info("resuming from %s (round %d)", ckpt.path, ckpt.round)
            bundle = ModelBundle(ckpt.spec, ckpt.taxonomy, ckpt.weights, ckpt.model_path.read_bytes())
            return bundle, ckpt.strategy_state
        taxonomy = run_taxonomy(s, taxonomy)
        if spec is None and s.spec_file:
            spec = ModelSpec.load(s.spec_file)
        return build_bundle(spec, taxonomy, blob), {}

    @property
    def remaining_rounds(self) -> int:
        """Rounds still to run (0 when a resumed run is already done)."""
        return self.settings.num_server_rounds - self.start_round

    def stop_after(self, last_round: int) -> None:
        """Cut the run short: ``last_round`` becomes the final round (a privacy budget allows no more)."""
        self.settings = replace(self.settings, num_server_rounds=last_round)

    def outcome(self, final_round: int, weights: Weights) -> FederationOutcome:
        """What the run produced, ending at ``final_round`` with ``weights``."""
        return FederationOutcome(self.rounds, final_round, weights)

    # --- the run ---------------------------------------------------------
    def run(self, grid: Grid) -> FederationOutcome:
        """Run the remaining rounds with the Message-API strategy on ``grid``."""
        s = self.settings
        if self.remaining_rounds <= 0:
            logger.info("all %d rounds are done already; nothing to run", s.num_server_rounds)
            return self.outcome(self.start_round, self.bundle.weights)
        strategy = self.strategy
        if not isinstance(strategy, Strategy):
            raise ConfigError(f"{type(strategy).__name__} runs on Flower's legacy workflow, not FederationRun.run")
        arrays = ArrayRecord({p.WEIGHTS_KEY: Array(self.bundle.weights.flat)})
        train, evaluate = self.track_configs(train_config(s, self.bundle), evaluate_config(s, self.bundle))
        if s.evaluate_initial and self.start_round == 0:
            self._evaluate_initial(strategy, grid, arrays, evaluate)
        result = strategy.start(
            grid,
            arrays,
            num_rounds=self.remaining_rounds,
            timeout=s.round_timeout,
            train_config=train,
            evaluate_config=evaluate,
            evaluate_fn=self.after_round,
        )
        # Flower leaves the arrays empty when no round produced an update: the weights are unchanged.
        trained = result.arrays is not None and p.WEIGHTS_KEY in result.arrays
        final = result.arrays[p.WEIGHTS_KEY].numpy() if trained else self.bundle.weights.flat
        return self.outcome(s.num_server_rounds, Weights(self.bundle.spec.hash, final))

    def track_configs(self, train: Config, evaluate: Config) -> tuple[Config, Config]:
        """Keep the train and evaluate configs so that a newly picked mix reaches the devices in later rounds."""
        self.live_configs = [train, evaluate]
        for key, value in self.extra_train_config.items():
            train[key] = value
        if self.encoder_version is not None:  # a text model: each device checks it embeds with this encoder
            train[p.ENCODER_VERSION_KEY] = evaluate[p.ENCODER_VERSION_KEY] = self.encoder_version
        train[p.LEARNING_RATE_KEY] = round_learning_rate(self.settings, self.bundle.spec.learning_rate,
                                                         self.start_round + 1)
        self._send_mix()
        return train, evaluate

    def _send_mix(self) -> None:
        if self.mix is not None:
            for config in self.live_configs:
                # JSON text, not a list: SecAgg+'s legacy FitIns carries scalars only
                config[p.MIX_KEY] = json.dumps(list(self.mix))

    def pick_mix(self, log: RoundLog) -> None:
        """Turn the round's ``mix-{i}-*`` means into the chosen blend; keep only its own HR@1 and MRR."""
        metrics = log.evaluate_metrics
        grid = mix_grid(self.settings.mix_grid_step) if self.settings.mix_grid_step else []
        if not grid or p.mix_metric_key(len(grid) - 1, "mrr") not in metrics:
            return
        hr1 = [metrics.pop(p.mix_metric_key(i, "hr@1")) for i in range(len(grid))]
        mrr = [metrics.pop(p.mix_metric_key(i, "mrr")) for i in range(len(grid))]
        best = best_candidate(hr1, mrr)
        log.mix = dict(zip(MIX_FIELDS, grid[best], strict=True))
        metrics[p.MIX_HR1_KEY], metrics[p.MIX_MRR_KEY] = hr1[best], mrr[best]
        self.mix = list(grid[best])
        self._send_mix()
        logger.info("round %d: blend %s (HR@1 %.4f, MRR %.4f on the devices' held-out events)",
                    log.round, log.mix, hr1[best], mrr[best])

    def _evaluate_initial(self, strategy: Strategy, grid: Grid, arrays: ArrayRecord, config: ConfigRecord) -> None:
        started = time.perf_counter()
        messages = strategy.configure_evaluate(0, arrays, config, grid)
        replies = grid.send_and_receive(messages, timeout=self.settings.round_timeout)
        strategy.aggregate_evaluate(0, replies)
        log = self.strategy.rounds[0]
        log.seconds = time.perf_counter() - started
        self.pick_mix(log)
        self._record(log)
        logger.info("round 0 (untrained model) evaluate: %s", log.evaluate_metrics)

    def after_round(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """The hook after each round's evaluate phase (Flower's ``evaluate_fn``): pick the blend, checkpoint, publish.

        Parameters
        ----------
        server_round : int
            The strategy's round number (this run's rounds count from 1; 0 is ignored).
        arrays : ArrayRecord
            The global weights after the round, at :data:`vane.shared.protocol.WEIGHTS_KEY`.
        """
        if server_round == 0:
            return None
        rnd = server_round + self.start_round
        log = self.strategy.rounds[rnd]
        log.seconds = time.perf_counter() - log.started
        if self.live_configs:  # the next round's rate (the config object is the one Flower sends every round)
            self.live_configs[0][p.LEARNING_RATE_KEY] = round_learning_rate(
                self.settings, self.bundle.spec.learning_rate, rnd + 1)
        weights = Weights(self.bundle.spec.hash, arrays[p.WEIGHTS_KEY].numpy().astype(np.float32))
        self.pick_mix(log)
        self._record(log)
        if not log.aggregated_nodes:  # no device trained: nothing new to checkpoint or publish
            logger.warning("round %d aggregated no update: no checkpoint, no model version", rnd)
            return None
        path = self.checkpoints.save(
            rnd,
            weights,
            self.bundle.spec,
            self.bundle.taxonomy,
            self.bundle.blob,
            self.rounds,
            self.strategy.state_arrays(),
            {p.MODEL_VERSION_KEY: self.bundle.version, "settings": self.settings.to_run_config()},
        )
        metrics = {**{k if k.startswith(("train-", "dp-")) else f"train-{k}": v for k, v in log.train_metrics.items()},
                   **log.evaluate_metrics, **self.population_metrics}
        mix = dict(zip(MIX_FIELDS, self.mix, strict=True)) if self.mix is not None else None
        version = self.registry.publish(rnd, self.bundle.spec.hash, self.bundle.taxonomy.version, metrics, path,
                                        mix=mix, encoder_version=self.encoder_version)
        logger.info(
            "round %d done in %.2fs: train %s | evaluate %s | rejected %s | failed %s | published %s",
            rnd, log.seconds, log.train_metrics, log.evaluate_metrics,
            sorted(log.rejected), sorted(log.failed), version.id,
        )
        return None

    def _record(self, log: RoundLog) -> None:
        entry = log.to_dict()
        self.rounds = [r for r in self.rounds if r["round"] != log.round] + [entry]
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / "metrics.json.tmp"
        tmp.write_text(json.dumps(self.rounds, indent=1), encoding="utf-8")
        tmp.replace(self.out / "metrics.json")
        if self.on_round is not None:
            self.on_round(log.round, self.settings.num_server_rounds, entry)
