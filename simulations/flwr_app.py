"""The ClientApp of ``flwr run .``: the device app over a built-in synthetic population.

The repository root is a Flower app (pyproject's ``[tool.flwr.app.components]``), so
``flwr run .`` works with no set-up. Each simulated SuperNode is a device whose store is
chosen, per message, in this order:

1. ``node_config`` ``store`` (a deployment): exactly :data:`vane.client.app.app`;
2. ``$VANE_SIM_DIR`` set: the stores prepared there (:func:`vane.simulations.federation.prepare_devices`);
3. otherwise the built-in population: node ``partition-id`` *i* is the synthetic user *i* of
   :class:`~vane.simulations.synthetic.SyntheticPopulation` (seed: run_config ``seed``), recorded
   once into ``.vane/sim/synthetic-seed<S>/user-<i>.store`` (relative to the SuperLink's working
   directory, git-ignored; ``$VANE_BUILTIN_SIM_DIR`` moves it). The same seed gives the same
   events; a store already prepared is reused, so a device that holds the current model
   version does not install it again.

Every message is then handled by the client's own handlers (:func:`vane.client.app.train_on_device`
and :func:`vane.client.app.evaluate_on_device`, with their error replies and privacy mods).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import numpy as np
from flwr.app import Context, Message
from vane.client.app import (
    SIM_DIR_ENV,
    SIM_KEY_FILE,
    build_client_app,
    evaluate_on_device,
    sim_store_path,
    train_on_device,
)
from vane.shared import protocol as p
from vane.shared.errors import ConfigError

__all__ = ["BUILTIN_DIR_ENV", "DEFAULT_BUILTIN_DIR", "app", "builtin_device", "device_root"]

#: Where the built-in population's stores go (relative to the working directory).
DEFAULT_BUILTIN_DIR = Path(".vane") / "sim"
#: Environment variable that moves :data:`DEFAULT_BUILTIN_DIR`.
BUILTIN_DIR_ENV = "VANE_BUILTIN_SIM_DIR"
#: Events of one built-in user (the synthetic population's default range is longer than needed).
BUILTIN_EVENTS = (80, 160)


def _partition(context: Context) -> int:
    partition = context.node_config.get(p.NODE_PARTITION_ID_KEY)
    if isinstance(partition, bool) or not isinstance(partition, (int, str)) or not str(partition).isdigit():
        raise ConfigError(f"node_config partition-id is {partition!r}; expected a non-negative integer "
                          "(or 'store' and 'key-file' for a deployment)")
    return int(partition)


def _seed(context: Context) -> int:
    seed = context.run_config.get(p.SEED_KEY, 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"run_config seed is {seed!r}; expected a non-negative integer")
    return seed


def builtin_device(root: str | Path, partition: int, seed: int = 0) -> Path:
    """Record synthetic user ``partition`` (of seed ``seed``) into ``root``'s store once; returns its path.

    A ``user-<i>.ready`` marker is written after the store is complete; a store without it (an
    interrupted preparation) is recreated. The key file ``root/store.key`` is created once, atomically.
    """
    from vane.client.store import write_key_file
    from vane.client.tracker import InterestTracker
    from vane.shared.taxonomy import Taxonomy
    from vane.simulations.synthetic import SyntheticPopulation

    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / SIM_KEY_FILE
    if not key.exists():
        tmp = folder / f".{SIM_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        write_key_file(tmp, secrets.token_bytes(32))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, key)  # the first writer wins; every device then uses the same key
        tmp.unlink()
    store = sim_store_path(folder, partition)
    ready = store.with_suffix(".ready")
    if ready.exists():
        return store
    for stale in folder.glob(store.name + "*"):
        stale.unlink()
    pop = SyntheticPopulation(1, events_per_user=BUILTIN_EVENTS, seed=seed)
    uid = f"u{partition:04d}"
    pop._generate_user(uid, np.random.default_rng([seed, partition]))  # user i alone, as SyntheticPopulation(i+1)
    with InterestTracker.open(store, key_file=key, taxonomy=Taxonomy(pop.categories)) as tracker:
        tracker.record_many(pop.users[uid])
    ready.write_text(f"seed {seed}\n", encoding="utf-8")
    return store


def device_root(context: Context) -> Path | None:
    """The simulation folder of this node's store (None in a deployment); prepares a built-in device."""
    if p.NODE_STORE_KEY in context.node_config:
        return None
    if os.environ.get(SIM_DIR_ENV):
        return Path(os.environ[SIM_DIR_ENV])
    root = Path(os.environ.get(BUILTIN_DIR_ENV) or DEFAULT_BUILTIN_DIR) / f"synthetic-seed{_seed(context)}"
    builtin_device(root, _partition(context), _seed(context))
    return root.resolve()


def _train(msg: Message, context: Context, sim_dir: str | Path | None = None) -> Message:
    return train_on_device(msg, context, device_root(context))


def _evaluate(msg: Message, context: Context, sim_dir: str | Path | None = None) -> Message:
    return evaluate_on_device(msg, context, device_root(context))


# A refused message, or a bad partition-id or seed, gets an error reply naming the VaneError.
app = build_client_app(on_train=_train, on_evaluate=_evaluate)
