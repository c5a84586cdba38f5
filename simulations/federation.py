"""The Flower simulation runner: the real ClientApp and ServerApp over simulated users.

:func:`run_federated` gives each user an encrypted store of their own
(``OUT/devices/user-NNNNN.store``, one key file ``OUT/devices/store.key``),
then runs :func:`flwr.simulation.run_simulation` with one SuperNode per user:
node ``partition-id`` *i* opens the store of the *i*-th user. The server side
is :func:`vane.server.app.build_server_app`, the client side
:func:`vane.client.app.build_client_app`, so the simulation exercises exactly
the code a deployment runs.

Outputs in ``OUT``: ``results.json`` (config, per-round train and evaluate
metrics, bytes uploaded per client, seconds per round), ``metrics.png`` and
``loss.png``, plus the server's ``checkpoints/``, ``registry/`` and
``metrics.json``.

:func:`run_isolated` runs it in a fresh process of its own. The ClientApp mods
that experiments and tests wrap around the devices (recording messages,
injecting faults) are in :mod:`vane.simulations.mods`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from vane.shared.errors import VaneError
from vane.shared.events import Event
from vane.shared.protocol import (
    DELTA_FLOAT16_KEY,
    LEARNING_RATE_KEY,
    LOCAL_EPOCHS_KEY,
    SEED_KEY,
    TRAIN_LOSS_KEY,
    to_config,
)
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.weights import Weights

logger = logging.getLogger("vane.simulations")

EVALUATE_METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@10", "mrr", "accuracy", "recall", "f1", "auc")


class FederationError(VaneError):
    """A federated simulation did not complete its rounds."""


@dataclass
class FederationResult:
    """What :func:`run_federated` measured.

    Attributes
    ----------
    rounds : list of dict
        One entry per round, round 0 being the untrained model's evaluation:
        ``round``, ``seconds``, ``train``, ``evaluate``, ``uploaded-bytes``
        (node id -> bytes), ``rejected``, ``failed``, ``aggregated-nodes``.
    """

    out_dir: Path
    config: dict[str, Any]
    rounds: list[dict[str, Any]]
    final_weights: Weights | None
    wall_seconds: float
    results_path: Path
    plots: list[Path] = field(default_factory=list)

    def evaluate(self, round_number: int) -> dict[str, float]:
        return dict(self.round(round_number)["evaluate"])

    def round(self, round_number: int) -> dict[str, Any]:
        for entry in self.rounds:
            if entry["round"] == round_number:
                return entry
        raise KeyError(f"no round {round_number} in this result")


# --- devices ------------------------------------------------------------------
def prepare_devices(users: Mapping[str, Sequence[Event]], taxonomy: Taxonomy, devices_dir: Path,
                    workers: int = 1) -> list[str]:
    """One encrypted store per user, in partition order; returns the user ids in that order.

    Parameters
    ----------
    users : mapping of user id -> events
    taxonomy : Taxonomy
    devices_dir : path
        Emptied first; gets ``store.key``, one ``user-NNNNN.store`` per user and ``partitions.json``.
    workers : int, default 1
        Processes recording the stores: 1 records them in this process, 0 uses one per CPU.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from vane.client.app import SIM_KEY_FILE
    from vane.client.store import write_key_file

    shutil.rmtree(devices_dir, ignore_errors=True)
    devices_dir.mkdir(parents=True)
    write_key_file(devices_dir / SIM_KEY_FILE, os.urandom(32))
    order = sorted(users)
    items = [(pid, users[uid]) for pid, uid in enumerate(order)]
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        done = _record_devices(str(devices_dir), taxonomy, items)
    else:
        size = max(1, len(items) // (workers * 4))
        chunks = [[(pid, list(events)) for pid, events in items[i : i + size]] for i in range(0, len(items), size)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = sum(pool.map(_record_devices, [str(devices_dir)] * len(chunks),
                                [taxonomy.to_dict()] * len(chunks), chunks))
    if done != len(order):
        raise FederationError(f"prepared {done} of {len(order)} device stores")
    (devices_dir / "partitions.json").write_text(json.dumps(order), encoding="utf-8")
    return order


def _record_devices(devices_dir: str, taxonomy: Taxonomy | dict[str, Any],
                    chunk: Sequence[tuple[int, Sequence[Event]]]) -> int:
    """Record each ``(partition, events)`` of ``chunk`` into its store; runs in a pool worker too."""
    from vane.client.app import SIM_KEY_FILE, sim_store_path
    from vane.client.tracker import InterestTracker

    tax = taxonomy if isinstance(taxonomy, Taxonomy) else Taxonomy.from_dict(taxonomy)
    key_file = Path(devices_dir) / SIM_KEY_FILE
    for pid, events in chunk:
        with InterestTracker.open(sim_store_path(devices_dir, pid), key_file=key_file, taxonomy=tax) as tracker:
            tracker.record_many(events)
    return len(chunk)


# --- the run ------------------------------------------------------------------
def run_federated(
    users: Mapping[str, Sequence[Event]],
    taxonomy: Taxonomy,
    spec: ModelSpec | None,
    rounds: int,
    fraction: float,
    out_dir: str | Path,
    strategy: str = "fedavg",
    local_epochs: int = 1,
    learning_rate: float = 0.0,
    seed: int = 0,
    delta_float16: bool = False,
    resume: bool = False,
    fraction_evaluate: float = 1.0,
    server_config: Mapping[str, Any] | None = None,
    client_mods: Sequence[Any] = (),
    model_blob: bytes | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    ray_address: str | None = None,
    on_round: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> FederationResult:
    """Run a Flower simulation with one SuperNode per user.

    Parameters
    ----------
    users : mapping of user id -> events
        Each user's time-ordered history; it stays in that user's encrypted store.
    taxonomy : Taxonomy
    spec : ModelSpec or None
        None builds ``ModelSpec(num_categories=len(taxonomy))``.
    rounds : int
        Total rounds (with ``resume``, including the ones already done).
    fraction : float
        Fraction of users trained per round.
    out_dir : path
    strategy : {"fedavg", "fedadam", "fedprox", "fedtrimmedavg", "krum"}, default "fedavg"
    local_epochs : int, default 1
    learning_rate : float, default 0.0
        0 means the spec's learning rate.
    seed : int, default 0
    delta_float16 : bool, default False
    resume : bool, default False
        Continue from the newest checkpoint in ``out_dir`` (the device stores are kept).
    fraction_evaluate : float, default 1.0
    server_config : mapping, optional
        Further ServerApp run_config keys (see :class:`vane.server.config.ServerSettings`).
    client_mods : sequence, optional
        Flower mods wrapped around every ClientApp call.
    model_blob : bytes, optional
        A training export of ``spec``, to skip the conversion.
    num_cpus : int, optional
        CPUs given to a Ray instance started here (default: all); each ClientApp actor takes one.
    progress : bool, default True
        One line per round on stderr, under a progress bar with ETA on a terminal.
    ray_address : str, optional
        Attach to this running Ray cluster (``ray start --head``'s ``HOST:PORT``, or ``"auto"``)
        instead of starting one; one ClientApp actor per CPU of its nodes. Its nodes must see
        ``out_dir`` (one machine, or a shared file system).
    on_round : callable, optional
        Called as ``on_round(round, total_rounds, round_log)`` after every round (round 0 = untrained).

    Raises
    ------
    FederationError
        When the run does not complete its rounds or a round aggregates no update.
    """
    from flwr.simulation import run_simulation
    from vane.client.app import build_client_app
    from vane.server.app import build_server_app
    from vane.server.config import ServerSettings
    from vane.server.run import FederationOutcome
    from vane.simulations.dispatch import fast_dispatch
    from vane.simulations.progress import RoundProgress, is_verbose, quiet_loggers

    out = Path(out_dir)
    overrides: dict[str, Any] = {
        "num-server-rounds": rounds,
        "strategy": strategy,
        "fraction-train": fraction,
        "fraction-evaluate": fraction_evaluate,
        "min-train-nodes": 1,
        "min-evaluate-nodes": 1,
        "min-available-nodes": len(users),
        LOCAL_EPOCHS_KEY: local_epochs,
        LEARNING_RATE_KEY: learning_rate,
        SEED_KEY: seed,
        DELTA_FLOAT16_KEY: delta_float16,
        "resume": resume,
        "out-dir": str(out),
        **dict(server_config or {}),
    }
    settings = ServerSettings.from_run_config(overrides)  # validate before creating anything or starting Ray
    privacy_config = _privacy_config(overrides, len(users))
    out.mkdir(parents=True, exist_ok=True)
    devices = out / "devices"
    if not resume:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        prepare_devices(users, taxonomy, devices)
    elif not devices.exists():
        raise FederationError(f"resume: {str(devices)!r} does not exist; run without resume first")
    outcome: list[FederationOutcome] = []
    started = time.perf_counter()
    verbose = is_verbose()
    if not verbose:
        quiet_loggers()  # flwr sets its logger's level when imported
    init_args: dict[str, Any] = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    if ray_address:
        init_args["address"] = ray_address
    else:
        init_args.update(num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=0)
    with RoundProgress(rounds, progress, on_round) as bar:
        server_app = build_server_app(spec, taxonomy, model_blob, overrides, bar.on_round, outcome)
        client_app = build_client_app(devices.resolve(), client_mods)
        with fast_dispatch():  # Flower's per-node polling is O(nodes x messages) per sweep
            run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=len(users),
                backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": init_args},
                verbose_logging=verbose,
            )
    wall = time.perf_counter() - started
    if not outcome:
        raise FederationError("the ServerApp did not finish; see the log above for the first error")
    result_rounds = outcome[0].rounds
    done = [r for r in result_rounds if r["round"] > 0]
    if not done or max(r["round"] for r in done) < min(rounds, outcome[0].final_round):  # DP budget may stop early
        raise FederationError(f"the run completed {len(done)} of {rounds} rounds")
    empty = [r["round"] for r in done if not r["aggregated-nodes"]]
    if empty:
        raise FederationError(f"round(s) {empty} aggregated no client update: every client failed or was rejected")
    config = {**settings.to_run_config(), **privacy_config, "users": len(users), "wall-seconds": wall,
              "completed-rounds": max(r["round"] for r in done)}
    results_path = _write_results(out, config, result_rounds)
    plots = write_plots(out, result_rounds)
    return FederationResult(out, config, result_rounds, outcome[0].weights, wall, results_path, plots)


def run_isolated(**kwargs: Any) -> FederationResult:
    """:func:`run_federated` in a fresh (spawned) process; returns its FederationResult.

    A second Flower simulation in one process was seen to hang (its ServerApp thread
    blocked inside numpy's OpenBLAS while building the initial weights), so experiments
    that run several federations give each one a process of its own.

    Parameters
    ----------
    **kwargs
        The arguments of :func:`run_federated`, by name.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result: FederationResult = pool.submit(_run_federated, kwargs).result()
    return result


def _run_federated(kwargs: dict[str, Any]) -> FederationResult:
    return run_federated(**kwargs)


def _privacy_config(overrides: Mapping[str, Any], population: int) -> dict[str, Any]:
    """Validated DP and SecAgg+ settings as run_config keys (raises PrivacyConfigError before Ray starts)."""
    from vane.server.config import PrivacySettings, SecAggSettings

    privacy = PrivacySettings.from_run_config(overrides, population)
    secagg = SecAggSettings.from_run_config(overrides)
    return {**to_config(privacy), **to_config(secagg)}


def _write_results(out: Path, config: dict[str, Any], rounds: list[dict[str, Any]]) -> Path:
    path = out / "results.json"
    payload = {
        "config": config,
        "rounds": [
            {
                "round": r["round"],
                "seconds": r["seconds"],
                "train": r["train"],
                "evaluate": r["evaluate"],
                "uploaded-bytes": r["uploaded-bytes"],
                "aggregated": len(r["aggregated-nodes"]),
                "rejected": r["rejected"],
                "failed": r["failed"],
            }
            for r in rounds
        ],
    }
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return path


def write_plots(out: Path, rounds: list[dict[str, Any]]) -> list[Path]:
    """``metrics.png`` (evaluate metrics by round) and ``loss.png`` (train loss by round)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    evaluated = [r for r in rounds if r["evaluate"]]
    names = [m for m in EVALUATE_METRICS if any(m in r["evaluate"] for r in evaluated)]
    if names:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name in names:
            ax.plot([r["round"] for r in evaluated], [r["evaluate"].get(name, np.nan) for r in evaluated],
                    marker="o", label=name)
        ax.set_xlabel("round (0 = untrained)")
        ax.set_ylabel("client-weighted mean")
        ax.set_title("Federated evaluation on each device's newest events")
        ax.legend(fontsize=8, ncol=3)
        fig.tight_layout()
        paths.append(out / "metrics.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    trained = [r for r in rounds if TRAIN_LOSS_KEY in r["train"]]
    if trained:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([r["round"] for r in trained], [r["train"][TRAIN_LOSS_KEY] for r in trained], marker="o")
        ax.set_xlabel("round")
        ax.set_ylabel("mean local training loss")
        fig.tight_layout()
        paths.append(out / "loss.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths
