"""The categoriser head federated in Flower's Simulation Engine over simulated devices.

:func:`run_head_simulation` writes each device's labelled examples to ``<workdir>/devices/head-NNNNN.npz``
(:func:`vane.client.head_app.sim_examples_path`: float16 embeddings, as a store keeps them, and labels),
then runs :func:`flwr.simulation.run_simulation` with one SuperNode per device: the ServerApp is
:func:`vane.server.head_app.build_head_server_app`, the ClientApp :func:`vane.client.head_app.
build_head_client_app`, so the simulation runs the code a deployment runs (the deployment's devices read
their examples from their encrypted stores instead).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from vane.server.head_app import HeadOutcome, HeadSettings

__all__ = ["run_head_simulation", "run_head_simulations", "write_device_examples"]


def write_device_examples(devices: Sequence[tuple[np.ndarray, np.ndarray]], folder: Path) -> None:
    """One ``head-NNNNN.npz`` per device in ``folder`` (emptied first)."""
    from vane.client.head_app import sim_examples_path

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for pid, (x, y) in enumerate(devices):
        np.savez(sim_examples_path(folder, pid), x=np.asarray(x, dtype=np.float16), y=np.asarray(y, dtype=np.int64))


def run_head_simulation(devices: Sequence[tuple[np.ndarray, np.ndarray]], settings: HeadSettings, *,
                        initial: np.ndarray | None = None, workdir: str | Path | None = None,
                        client_mods: Sequence[Any] = (), num_cpus: int | None = None,
                        isolated: bool = False) -> HeadOutcome:
    """Federate the head over ``devices`` (each ``(x float32[n, dims], y int[n])``, one SuperNode each).

    ``client_mods`` wrap every ClientApp call (e.g. :class:`vane.simulations.audit.text.TextAudit`);
    ``isolated`` runs it in a fresh (spawned) process, as a second Flower simulation in one process was
    seen to hang (:func:`vane.simulations.federation.run_isolated`).
    """
    return run_head_simulations(devices, [settings], initial=initial, workdir=workdir, client_mods=client_mods,
                                num_cpus=num_cpus, isolated=isolated)[0]


def run_head_simulations(devices: Sequence[tuple[np.ndarray, np.ndarray]], runs: Sequence[HeadSettings], *,
                         initial: np.ndarray | None = None, workdir: str | Path | None = None,
                         client_mods: Sequence[Any] = (), num_cpus: int | None = None,
                         isolated: bool = False) -> list[HeadOutcome]:
    """:func:`run_head_simulation` for each of ``runs`` in turn, in one Flower simulation (one start of the
    engine) on the same devices; one outcome per run, in order."""
    if isolated:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(run_head_simulations, [(np.asarray(x), np.asarray(y)) for x, y in devices],
                               list(runs), initial=initial, workdir=workdir, client_mods=list(client_mods),
                               num_cpus=num_cpus).result()
    from flwr.simulation import run_simulation
    from vane.client.head_app import build_head_client_app
    from vane.server.head_app import build_head_server_app
    from vane.simulations.dispatch import fast_dispatch
    from vane.simulations.federation import FederationError
    from vane.simulations.progress import is_verbose, quiet_loggers

    if not devices or not runs:
        raise FederationError(f"the head federation has {len(devices)} devices and {len(runs)} runs; expected "
                              "at least one of each")
    if any(s.secagg.secure_aggregation for s in runs) and len(devices) < 2:
        raise FederationError(f"secure-aggregation is on with {len(devices)} device; expected at least 2 (SecAgg+ "
                              "masks each device's update with the others')")
    runs = [replace(s, min_nodes=len(devices)) if s.min_nodes > len(devices) else s for s in runs]
    # DP accounting: the population is every simulated device unless the settings name one
    runs = [replace(s, privacy=replace(s.privacy, population_size=len(devices)))
            if s.privacy.enabled and not s.privacy.population_size else s for s in runs]
    with tempfile.TemporaryDirectory(prefix="vane-head-") as tmp:
        folder = (Path(workdir) if workdir is not None else Path(tmp)) / "devices"
        write_device_examples(devices, folder)
        outcome: list[HeadOutcome] = []
        verbose = is_verbose()
        if not verbose:
            quiet_loggers()
        init_args = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR,
                     "num_cpus": num_cpus or os.cpu_count() or 1, "num_gpus": 0}
        with fast_dispatch():
            run_simulation(server_app=build_head_server_app(runs, outcome, initial),
                           client_app=build_head_client_app(folder.resolve(), client_mods),
                           num_supernodes=len(devices),
                           backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                           "init_args": init_args},
                           verbose_logging=verbose)
    if len(outcome) < len(runs):
        raise FederationError(f"the head's ServerApp finished {len(outcome)} of {len(runs)} runs; see the log above "
                              "for the first error")
    return outcome
