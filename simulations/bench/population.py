"""Benchmark of the federated population statistics: seconds and bytes per device, and the sum's error.

``python -m vane.simulations.bench.population --dataset taobao --secure`` loads the dataset's
training portion (the evaluation's per-user temporal split and training taxonomy, as
``vane sim evaluate`` builds them), runs :func:`vane.simulations.population_fed.federated_population_stats`
in Flower's Simulation Engine once per repeat (each in a fresh subprocess: a second Flower simulation in
one process was seen to hang) and prints, as medians over the repeats:

- ``round_s``: the analytics round as the ServerApp times it (Ray start-up excluded);
- ``wall_s``: the whole call (recording the device stores, Ray start-up, the round);
- ``up_kib`` / ``down_kib``: bytes a device sends / receives over the whole round (every SecAgg+ stage);
- ``max_abs_error``: the largest entry-wise distance from the plain sum of the device counts (each
  history in the tracker's time order, :func:`vane.client.personal.event_key`), and the stated ``tolerance``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any


def _case(dataset: str, max_users: int | None, secure: bool, dp_noise: float | None) -> dict[str, Any]:
    import numpy as np
    from vane.client.personal import event_key
    from vane.shared.population_artifact import count_vector, stats_vector
    from vane.simulations.population_fed import federated_population_stats

    users, taxonomy = _training_users(dataset, max_users)
    stats, info = federated_population_stats(users, taxonomy, secure_aggregation=secure, dp_noise=dp_noise, seed=0)
    # The devices count their events in the tracker's time order (same-instant events by event_key).
    plain = np.sum([count_vector(sorted(events, key=event_key), taxonomy) for events in users.values()], axis=0)
    error = float(np.max(np.abs(info["artifact"].vector - plain)))
    del info["artifact"]
    return {**info, "max-abs-error": error, "taxonomy-size": len(taxonomy), "stats-size": int(len(stats_vector(stats,
                                                                                                          taxonomy)))}


def _training_users(dataset: str, max_users: int | None) -> tuple[dict[str, Any], Any]:
    if dataset == "synthetic":
        from vane.shared.taxonomy import Taxonomy
        from vane.simulations.synthetic import SyntheticPopulation

        pop = SyntheticPopulation(max_users or 100, seed=0)
        return dict(pop.users), Taxonomy(pop.categories)
    from vane.simulations.datasets import load_dataset
    from vane.simulations.split import temporal_split, train_taxonomy

    split = temporal_split(load_dataset(dataset, max_users=max_users).users)
    return dict(split.train), train_taxonomy(split)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the federated population statistics round (Flower simulation).")
    parser.add_argument("--dataset", choices=("taobao", "movielens", "synthetic"), default="synthetic",
                        help="whose training users become the devices")
    parser.add_argument("--max-users", type=int, default=None, help="at most this many users (default: all)")
    parser.add_argument("--secure", action="store_true", help="sum under SecAgg+")
    parser.add_argument("--dp-noise", type=float, default=None, help="Gaussian noise multiplier on the sum")
    parser.add_argument("--repeats", type=int, default=1, help="runs, each in a fresh process; medians are printed")
    parser.add_argument("--one-case", action="store_true", help="run one case here and print its JSON (internal)")
    args = parser.parse_args(argv)
    if args.one_case:
        print(json.dumps(_case(args.dataset, args.max_users, args.secure, args.dp_noise)))
        return 0
    runs = []
    command = [sys.executable, "-m", "vane.simulations.bench.population", "--one-case", "--dataset", args.dataset]
    command += ["--max-users", str(args.max_users)] if args.max_users else []
    command += ["--secure"] if args.secure else []
    command += ["--dp-noise", str(args.dp_noise)] if args.dp_noise else []
    for _ in range(args.repeats):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    keys = ("seconds", "wall-seconds", "prepare-seconds", "bytes-per-device", "downlink-bytes-per-device",
            "max-abs-error")
    report = {k: statistics.median(r[k] for r in runs) for k in keys}
    last = runs[-1]
    report.update({k: last[k] for k in ("devices", "taxonomy-size", "vector-entries", "tolerance", "epsilon",
                                        "secure-aggregation")})
    print(json.dumps(report, indent=1))
    print(f"{args.dataset}: {last['devices']} devices, V={last['taxonomy-size']}, SecAgg+ {args.secure}: "
          f"round {report['seconds']:.1f} s, wall {report['wall-seconds']:.1f} s, "
          f"{report['bytes-per-device'] / 1024:.1f} KiB up / {report['downlink-bytes-per-device'] / 1024:.1f} KiB "
          f"down per device, max error {report['max-abs-error']:.3g} (tolerance {last['tolerance']:.3g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
