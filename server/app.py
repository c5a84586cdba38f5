"""The Flower ServerApp: federated training of the interest model.

``vane.server.app:app`` reads its settings from ``run_config`` (kebab-case
keys, defaults in :class:`ServerSettings`, since ``run_simulation`` leaves
``run_config`` empty). Each round it

1. sends the global weights (and the LiteRT model to nodes that lack it),
2. aggregates the clients' weight deltas with the chosen strategy
   (:mod:`vane.server.strategies`), rejecting bad updates,
3. collects evaluate metrics, weighted by ``num-examples``,
4. writes a checkpoint to ``out-dir`` and publishes a model version in the
   registry.

``resume = true`` continues from the newest checkpoint in ``out-dir``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from vane.server.checkpoint import CheckpointStore
from vane.server.registry import ModelRegistry
from vane.server.strategies import STRATEGIES, WEIGHTS_KEY, DeltaAggregation, RoundLog, make_strategy
from vane.shared.blend import MIX_CONFIG_KEY, MIX_FIELDS, best_candidate, mix_grid
from vane.shared.errors import ConfigError
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

logger = logging.getLogger("vane.server")

RoundCallback = Callable[[int, int, dict[str, Any]], None]


@dataclass(frozen=True)
class ServerSettings:
    """Every ServerApp tunable; the run_config key is the field name in kebab-case.

    Parameters
    ----------
    num_server_rounds : int, default 3
        Total rounds of the run (a resumed run counts the rounds already done).
    strategy : {"fedavg", "fedadam", "fedprox", "fedtrimmedavg", "krum"}, default "fedavg"
    fraction_train, fraction_evaluate : float, default 1.0
        Fraction of connected nodes sampled per round.
    min_train_nodes, min_evaluate_nodes, min_available_nodes : int, default 2
    local_epochs : int, default 1
        Epochs each client trains per round.
    learning_rate : float, default 0.0
        Client learning rate; 0 means the ModelSpec's.
    proximal_mu : float, default 0.01
        FedProx proximal weight.
    server_learning_rate : float, default 0.01
        FedAdam's server step (eta).
    trim_beta : float, default 0.2
        FedTrimmedAvg's cut fraction per tail.
    num_malicious_nodes : int, default 0
        Krum's assumed attackers.
    delta_float16 : bool, default False
        Clients send float16 deltas (half the upload).
    seed : int, default 0
        Seeds client shuffling together with the round, so runs are reproducible.
    holdout_fraction : float, default 0.1
        Newest fraction of each client's events kept for evaluation.
    out_dir : str, default "vane-run"
        Checkpoints, metrics.json and the registry go here.
    registry_dir : str, default ""
        Model registry directory; empty means ``OUT/registry``.
    resume : bool, default False
        Continue from the newest checkpoint in ``out_dir``.
    spec_file, taxonomy_file : str, default ""
        JSON files of the ModelSpec and Taxonomy; empty means the synthetic defaults.
    round_timeout : float, default 600
        Seconds to wait for replies in each phase.
    evaluate_initial : bool, default True
        Evaluate the untrained model on the clients before round 1 (recorded as round 0).
    mix_grid_step : float, default 0.25
        Federated choice of the on-device blend: each evaluating device scores the candidates of
        ``mix_grid(step)`` (70 at 0.25) on its held-out events and sends their mean HR@1 and MRR;
        the best is published with the model version and sent to the devices. 0 turns it off.
    """

    num_server_rounds: int = 3
    strategy: str = "fedavg"
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_train_nodes: int = 2
    min_evaluate_nodes: int = 2
    min_available_nodes: int = 2
    local_epochs: int = 1
    learning_rate: float = 0.0
    proximal_mu: float = 0.01
    server_learning_rate: float = 0.01
    trim_beta: float = 0.2
    num_malicious_nodes: int = 0
    delta_float16: bool = False
    seed: int = 0
    holdout_fraction: float = 0.1
    out_dir: str = "vane-run"
    registry_dir: str = ""
    resume: bool = False
    spec_file: str = ""
    taxonomy_file: str = ""
    round_timeout: float = 600.0
    evaluate_initial: bool = True
    mix_grid_step: float = 0.25

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"run_config strategy is {self.strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if self.num_server_rounds < 1:
            raise ConfigError(f"run_config num-server-rounds is {self.num_server_rounds}; expected >= 1")
        for name in ("fraction_train", "fraction_evaluate"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"run_config {name.replace('_', '-')} is {value}; expected 0 < value <= 1")
        if self.local_epochs < 1:
            raise ConfigError(f"run_config local-epochs is {self.local_epochs}; expected >= 1")
        if self.learning_rate < 0:
            raise ConfigError(f"run_config learning-rate is {self.learning_rate}; expected >= 0 (0 = spec default)")
        if self.mix_grid_step:
            try:
                mix_grid(self.mix_grid_step)
            except ValueError as exc:
                raise ConfigError(f"run_config mix-grid-step: {exc} (0 = off)") from None

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> ServerSettings:
        """Settings from kebab-case ``run_config`` keys; unknown keys are ignored (clients read some)."""
        return cls(**run_config_values(cls, run_config))

    def to_run_config(self) -> dict[str, Any]:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}


def run_config_values(settings_class: type[Any], run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a settings dataclass found in ``run_config`` (kebab-case keys), coerced to
    the type of each field's default; absent keys are left to the defaults."""
    defaults = settings_class()
    values: dict[str, Any] = {}
    for f in fields(settings_class):
        key = f.name.replace("_", "-")
        if key in run_config:
            values[f.name] = _coerce(key, run_config[key], type(getattr(defaults, f.name)))
    return values


def _coerce(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            return float(value)
    elif kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"run_config {key} is {value!r}; expected a value of type {kind.__name__}")


def model_version_of(spec: ModelSpec, taxonomy: Taxonomy) -> str:
    """The model version clients install: the architecture (spec) and vocabulary (taxonomy)."""
    return f"{spec.hash}.{taxonomy.version[:8]}"


def default_taxonomy() -> Taxonomy:
    """The synthetic population's default vocabulary (12 categories)."""
    from vane.simulations.synthetic import SyntheticPopulation  # lazy: only for the default

    return Taxonomy(SyntheticPopulation(1, seed=0).categories)


@dataclass
class ModelBundle:
    """What the server trains: the spec, vocabulary, initial weights and the LiteRT file."""

    spec: ModelSpec
    taxonomy: Taxonomy
    weights: Weights
    blob: bytes

    @property
    def version(self) -> str:
        return model_version_of(self.spec, self.taxonomy)


def build_bundle(spec: ModelSpec | None, taxonomy: Taxonomy | None, blob: bytes | None = None) -> ModelBundle:
    """Initial weights and the training export for ``spec`` (built from ``taxonomy`` when None)."""
    from vane.server.model import build_model, export_training_model

    taxonomy = taxonomy or default_taxonomy()
    spec = spec or ModelSpec(num_categories=len(taxonomy))
    if spec.num_categories != len(taxonomy):
        raise ConfigError(f"ModelSpec.num_categories is {spec.num_categories} but the taxonomy has {len(taxonomy)}")
    model = build_model(spec)
    blob = blob if blob is not None else export_training_model(model)
    return ModelBundle(spec, taxonomy, model.weights(), blob)


@dataclass
class FederationOutcome:
    """What a ServerApp run produced."""

    rounds: list[dict[str, Any]] = field(default_factory=list)
    final_round: int = 0
    weights: Weights | None = None


def _train_config(settings: ServerSettings, bundle: ModelBundle) -> ConfigRecord:
    return ConfigRecord(
        {
            "local-epochs": settings.local_epochs,
            "learning-rate": settings.learning_rate,
            "delta-float16": settings.delta_float16,
            "seed": settings.seed,
            "holdout-fraction": settings.holdout_fraction,
            "spec-hash": bundle.spec.hash,
            "taxonomy": json.dumps(bundle.taxonomy.to_dict()),
        }
    )


def _evaluate_config(settings: ServerSettings, bundle: ModelBundle) -> ConfigRecord:
    return ConfigRecord(
        {
            "holdout-fraction": settings.holdout_fraction,
            "mix-grid-step": settings.mix_grid_step,
            "spec-hash": bundle.spec.hash,
            "taxonomy": json.dumps(bundle.taxonomy.to_dict()),
        }
    )


class FederationRun:
    """One ServerApp run: strategy, checkpoints, registry, per-round logs."""

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
        self.strategy_state = state
        #: The blend picked by the newest federated evaluation (MIX_FIELDS order), sent with later rounds.
        self.mix: list[float] | None = next(
            ([float(r["mix"][f]) for f in MIX_FIELDS] for r in reversed(self.rounds) if r.get("mix")), None)
        #: Config records handed to the strategy once; the picked mix is written into them.
        self.live_configs: list[MutableMapping[str, Any]] = []
        self.strategy = make_strategy(
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
        )
        self.strategy.load_state_arrays(state)

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
        if taxonomy is None and s.taxonomy_file:
            taxonomy = Taxonomy.load(s.taxonomy_file)
        if spec is None and s.spec_file:
            spec = ModelSpec.load(s.spec_file)
        return build_bundle(spec, taxonomy, blob), {}

    # --- the run ---------------------------------------------------------
    def run(self, grid: Grid) -> FederationOutcome:
        s = self.settings
        remaining = s.num_server_rounds - self.start_round
        if remaining <= 0:
            logger.info("all %d rounds are done already; nothing to run", s.num_server_rounds)
            return FederationOutcome(self.rounds, self.start_round, self.bundle.weights)
        arrays = ArrayRecord({WEIGHTS_KEY: Array(self.bundle.weights.flat)})
        train_config, evaluate_config = self.track_configs(_train_config(s, self.bundle),
                                                           _evaluate_config(s, self.bundle))
        if s.evaluate_initial and self.start_round == 0:
            self._evaluate_initial(grid, arrays, evaluate_config)
        result = self.strategy.start(
            grid,
            arrays,
            num_rounds=remaining,
            timeout=s.round_timeout,
            train_config=train_config,
            evaluate_config=evaluate_config,
            evaluate_fn=self._after_round,
        )
        final = result.arrays[WEIGHTS_KEY].numpy() if result.arrays is not None else self.bundle.weights.flat
        return FederationOutcome(self.rounds, s.num_server_rounds, Weights(self.bundle.spec.hash, final))

    def track_configs(self, *configs: Any) -> tuple[Any, ...]:
        """Keep ``configs`` (train, evaluate) so that a newly picked mix reaches the devices in later rounds."""
        self.live_configs = list(configs)
        self._send_mix()
        return configs

    def _send_mix(self) -> None:
        if self.mix is not None:
            for config in self.live_configs:
                config[MIX_CONFIG_KEY] = list(self.mix)

    def pick_mix(self, log: RoundLog) -> None:
        """Turn the round's ``mix-{i}-*`` means into the chosen blend; keep only its own HR@1 and MRR."""
        metrics = log.evaluate_metrics
        grid = mix_grid(self.settings.mix_grid_step) if self.settings.mix_grid_step else []
        if not grid or f"mix-{len(grid) - 1}-mrr" not in metrics:
            return
        hr1 = [metrics.pop(f"mix-{i}-hr@1") for i in range(len(grid))]
        mrr = [metrics.pop(f"mix-{i}-mrr") for i in range(len(grid))]
        best = best_candidate(hr1, mrr)
        log.mix = dict(zip(MIX_FIELDS, grid[best], strict=True))
        metrics["mix-hr@1"], metrics["mix-mrr"] = hr1[best], mrr[best]
        self.mix = list(grid[best])
        self._send_mix()
        logger.info("round %d: blend %s (HR@1 %.4f, MRR %.4f on the devices' held-out events)",
                    log.round, log.mix, hr1[best], mrr[best])

    def _evaluate_initial(self, grid: Grid, arrays: ArrayRecord, config: ConfigRecord) -> None:
        strategy: Any = self.strategy
        started = time.perf_counter()
        messages = strategy.configure_evaluate(0, arrays, config, grid)
        replies = grid.send_and_receive(messages, timeout=self.settings.round_timeout)
        strategy.aggregate_evaluate(0, replies)
        log: RoundLog = self.strategy.rounds[0]
        log.seconds = time.perf_counter() - started
        self.pick_mix(log)
        self._record(log)
        logger.info("round 0 (untrained model) evaluate: %s", log.evaluate_metrics)

    def _after_round(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Flower's evaluate_fn hook: runs after each round's evaluate phase; we checkpoint here."""
        if server_round == 0:
            return None
        rnd = server_round + self.start_round
        log = self.strategy.rounds[rnd]
        log.seconds = time.perf_counter() - log.started
        weights = Weights(self.bundle.spec.hash, arrays[WEIGHTS_KEY].numpy().astype(np.float32))
        self.pick_mix(log)
        self._record(log)
        path = self.checkpoints.save(
            rnd,
            weights,
            self.bundle.spec,
            self.bundle.taxonomy,
            self.bundle.blob,
            self.rounds,
            self.strategy.state_arrays(),
            {"model-version": self.bundle.version, "settings": self.settings.to_run_config()},
        )
        metrics = {**{k if k.startswith(("train-", "dp-")) else f"train-{k}": v for k, v in log.train_metrics.items()},
                   **log.evaluate_metrics}
        mix = dict(zip(MIX_FIELDS, self.mix, strict=True)) if self.mix is not None else None
        version = self.registry.publish(rnd, self.bundle.spec.hash, self.bundle.taxonomy.version, metrics, path,
                                        mix=mix)
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


def build_server_app(
    spec: ModelSpec | None = None,
    taxonomy: Taxonomy | None = None,
    model_blob: bytes | None = None,
    overrides: Mapping[str, Any] | None = None,
    on_round: RoundCallback | None = None,
    outcome: list[FederationOutcome] | None = None,
) -> ServerApp:
    """A ServerApp; arguments preset what ``run_config`` would (the simulation runner uses them).

    Parameters
    ----------
    spec, taxonomy, model_blob : optional
        The model to train; by default built from ``spec-file``/``taxonomy-file`` or the synthetic defaults.
    overrides : mapping, optional
        run_config keys that take precedence over the context's run_config.
    on_round : callable, optional
        Called as ``on_round(round, total_rounds, round_log)`` after every round (round 0 = untrained).
    outcome : list, optional
        Receives the :class:`FederationOutcome` when the run ends.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_config = {**dict(context.run_config), **dict(overrides or {})}
        settings = ServerSettings.from_run_config(run_config)
        run = FederationRun(settings, spec, taxonomy, model_blob, on_round)
        result = run_private(run, grid, context, run_config)
        if outcome is not None:
            outcome.append(result)

    return app


def run_private(run: FederationRun, grid: Grid, context: Context, run_config: Mapping[str, Any]) -> FederationOutcome:
    """Run with SecAgg+ (``secure-aggregation``) or with the DP wrapper that ``dp-mode`` asks for, or plainly."""
    from vane.server.privacy import apply_privacy
    from vane.server.secagg import SecAggSettings, run_secure

    secagg = SecAggSettings.from_run_config(run_config)
    if secagg.secure_aggregation:
        return run_secure(run, grid, context, secagg, run_config)
    apply_privacy(run, run_config)
    return run.run(grid)


app = build_server_app()

__all__ = ["DeltaAggregation", "FederationOutcome", "FederationRun", "ServerSettings", "app", "build_server_app"]
