"""``vane sim …``: simulations, evaluation, privacy audits and benchmarks."""

from __future__ import annotations

from typing import Any

import typer

sim_app = typer.Typer(no_args_is_help=True, help="Simulations, evaluation, audits and benchmarks.")

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: the model, the device SDK, federated simulations.")
sim_app.add_typer(bench_app, name="bench")


VERBOSE_HELP = "Also show Flower, TensorFlow, absl and Ray logs (default: one line per round or phase)."


def demo(
    users: int = typer.Option(40, "--users", min=2, help="Simulated devices."),
    rounds: int = typer.Option(5, "--rounds", min=1, help="Federated rounds."),
    out: str | None = typer.Option(None, "--out", help="Report folder (default: $VANE_DEMO_OUT or reports/demo)."),
    seed: int = typer.Option(0, "--seed", min=0),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """The main job: a federated run on the built-in synthetic population."""
    from vane.simulations.progress import configure_output

    configure_output(verbose)
    from vane.simulations.demo import run_demo

    raise typer.Exit(run_demo(out, users=users, rounds=rounds, seed=seed))


@bench_app.command("model")
def bench_model_command(
    spec_path: str | None = typer.Option(None, "--spec", help="ModelSpec JSON file; the default spec if omitted."),
    train_steps: int = typer.Option(300, help="TF steps on synthetic sessions before export (for top-1 agreement)."),
) -> None:
    """Step/infer/train speed, export sizes, quantization agreement and client RSS of the LiteRT model."""
    from vane.shared.spec import ModelSpec
    from vane.simulations.bench.model import TARGETS, print_report, run_model_bench

    spec = ModelSpec.load(spec_path) if spec_path else ModelSpec()
    result = run_model_bench(spec, train_steps=train_steps)
    print_report(result)
    _exit_on_missed(TARGETS, result)


@bench_app.command("text-model")
def bench_text_model_command(
    text_dim: int = typer.Option(384, min=1, help="Width of the text embedding (384: the MiniLM encoder)."),
    text_proj: int = typer.Option(16, min=1, help="Width of its trainable projection into the LSTM input."),
    train_steps: int = typer.Option(100, min=0, help="TF steps on synthetic sessions before each export."),
) -> None:
    """The default interest model without and with the text input: sizes, step latency, training speed, RSS."""
    from vane.simulations.bench.text_model import print_report, run

    print_report(run(text_dim=text_dim, text_proj=text_proj, train_steps=train_steps))


@bench_app.command("client")
def bench_client_command(
    categories: int = typer.Option(64, min=2, help="Taxonomy size of the benchmark model."),
) -> None:
    """record()/record_many()/interests()/predict() speed, RSS and import time of the device SDK."""
    from vane.simulations.bench.client import TARGETS, print_report, run

    figures = run(num_categories=categories)
    print_report(figures)
    _exit_on_missed(TARGETS, figures)


@bench_app.command("ranker")
def bench_ranker_command(
    categories: int = typer.Option(256, min=2, help="Taxonomy size of the benchmark model."),
) -> None:
    """The candidate ranker's per-event cost on the device: features, LiteRT rank, record() beside it."""
    from vane.simulations.bench.ranker import TARGETS, print_report, run

    figures = run(num_categories=categories)
    print_report(figures)
    _exit_on_missed(TARGETS, figures)


@bench_app.command("encoder")
def bench_encoder_command() -> None:
    """Text encoder: build time, file size, embed one title, record()/record_many() with it, RSS with 10k events."""
    from vane.simulations.bench.encoder import TARGETS, print_report, run

    figures = run()
    print_report(figures)
    _exit_on_missed(TARGETS, figures)


def _exit_on_missed(targets: dict[str, Any], figures: dict[str, float]) -> None:
    """Exit 1 when a measured value misses its target."""
    missed = [name for name, target in targets.items() if name in figures and target.met(figures[name]) is False]
    if missed:
        typer.echo(f"missed target(s): {', '.join(missed)}", err=True)
        raise typer.Exit(1)


@bench_app.command("import")
def bench_import_command(
    visits: int = typer.Option(1_000_000, "--visits", min=1, help="Visits in the synthetic Chrome History."),
) -> None:
    """Import a synthetic Chrome History into a fresh store: visits/s and peak RSS (exit 1 over 200 MiB)."""
    from vane.simulations.bench.history import print_report, run_import_bench

    if not print_report(run_import_bench(visits)):
        raise typer.Exit(1)


@bench_app.command("federation")
def bench_federation_command(
    users: str = typer.Option("10,100,1000", "--users", help="Comma-separated population sizes (float32 runs)."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Federated rounds after round 0 (initial evaluation)."),
    fraction: float = typer.Option(0.1, "--fraction", help="Fraction of users trained and evaluated per round."),
    out: str | None = typer.Option(None, "--out", help="Output folder (default: a new temporary folder)."),
    events: str = typer.Option("60,120", "--events", help="Events per synthetic user: LOW,HIGH."),
    prepare_workers: int = typer.Option(0, "--prepare-workers", min=0, help="Processes preparing stores (0: CPUs)."),
    per_round: int = typer.Option(0, "--per-round", min=0, help="Users trained and evaluated per round (overrides "
                                  "--fraction; e.g. --users 10000 --per-round 100)."),
    float16: bool = typer.Option(True, "--float16/--no-float16",
                                 help="Also run the smallest size with float16 deltas."),
) -> None:
    """Seconds per round, peak memory of the process tree, and float32 vs float16 upload bytes per client.

    Exits 1 when a target is missed or a case fails.
    """
    from vane.shared.errors import ConfigError
    from vane.simulations.bench.federation import print_report, run_federation_bench, targets_met

    try:
        sizes = [int(n) for n in users.split(",") if n.strip()]
        low, high = (int(n) for n in events.split(","))
    except ValueError as exc:
        raise ConfigError(f"--users is {users!r} and --events is {events!r}; expected e.g. 10,100,1000 and 60,120") \
            from exc
    report = run_federation_bench(sizes, rounds=rounds, fraction=fraction, out_dir=out, events_per_user=(low, high),
                                  prepare_workers=prepare_workers, progress=typer.echo, per_round=per_round,
                                  float16=float16)
    print_report(report)
    if not targets_met(report):
        typer.echo("a target was missed or a case failed (see the targets table)", err=True)
        raise typer.Exit(1)


@bench_app.command("dashboard")
def bench_dashboard_command(
    events: int = typer.Option(10_000, "--events", min=1, help="Events in the served store."),
    loads: int = typer.Option(7, "--loads", min=1, help="Cold loads of the dashboard measured (after one warm-up)."),
) -> None:
    """Time to interactive of the dashboard in headless Chromium over a served store (exit 1 over 1 s)."""
    from vane.simulations.bench.dashboard import print_report, run_dashboard_bench

    if not print_report(run_dashboard_bench(events, loads)):
        raise typer.Exit(1)


@bench_app.command("api")
def bench_api_command(
    events: int = typer.Option(10_000, "--events", min=1, help="Events in the served store."),
    rate: float = typer.Option(100.0, "--rate", min=1.0, help="Requests per second (one event each)."),
    seconds: float = typer.Option(60.0, "--seconds", min=1.0, help="How long to send (shorten for a quick look)."),
) -> None:
    """Record one event over the local HTTP API at a fixed rate: p50/p99 latency and server RSS (exit 1 if missed)."""
    from vane.simulations.bench.api import print_report, run_api_bench

    if not print_report(run_api_bench(events, rate, seconds, progress=typer.echo)):
        raise typer.Exit(1)


@sim_app.command("evaluate")
def evaluate_command(
    dataset: str = typer.Option(..., help="taobao, movielens or synthetic."),
    out: str = typer.Option(..., help="Output folder: results.json, report.md, plots."),
    data: str | None = typer.Option(None, help="Dataset file or folder (default: ../shared/datasets)."),
    seed: int = typer.Option(0, help="Seed of everything random (split candidates, models, shuffles)."),
    max_users: int | None = typer.Option(None, help="Only the first N users (synthetic: population size)."),
    rounds: int = typer.Option(10, min=1, help="Federated rounds."),
    methods: str = typer.Option("all", help="Comma-separated methods, or 'all'."),
    epochs: int = typer.Option(6, min=1, help="Centralised training epochs."),
    local_epochs: int = typer.Option(20, min=1, help="Local-only LSTM epochs per user."),
    fed_epochs: int = typer.Option(5, min=1, help="Local epochs per federated round."),
    fraction: float = typer.Option(1.0, help="Fraction of users trained per federated round."),
    taxonomy_size: int = typer.Option(256, min=2, help="Largest taxonomy, 'other' included."),
    new_users: bool = typer.Option(True, "--new-users/--no-new-users",
                                   help="Also evaluate the baselines and LightGBM on users held out of training."),
    ranker_rounds: int = typer.Option(120, min=1, help="Federated rounds of federated-ranker."),
    ranker_fraction: float = typer.Option(0.1, min=0.0, max=1.0, help="Fraction of devices federated-ranker "
                                          "samples per round (the statistics round asks every device)."),
    ranker_local_epochs: int = typer.Option(2, min=1, help="Local epochs of each sampled device per round."),
    ranker_secure: bool = typer.Option(False, "--ranker-secure/--ranker-clear",
                                       help="federated-ranker (statistics and training) under SecAgg+."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Every method on one temporal split: next interest, intensity and sampled next item."""
    from vane.simulations.progress import configure_output

    configure_output(verbose)
    from rich.console import Console
    from vane.simulations.evaluate import METHODS, EvaluationConfig, run_evaluation
    from vane.simulations.progress import MethodProgress

    console = Console()
    chosen = METHODS if methods.strip() == "all" else tuple(m.strip() for m in methods.split(",") if m.strip())
    config = EvaluationConfig(
        dataset=dataset.strip().lower(), data=data, seed=seed, max_users=max_users, rounds=rounds, methods=chosen,
        epochs=epochs, local_epochs=local_epochs, fed_local_epochs=fed_epochs, fraction=fraction,
        taxonomy_size=taxonomy_size, new_users=new_users, ranker_rounds=ranker_rounds,
        ranker_fraction=ranker_fraction, ranker_local_epochs=ranker_local_epochs, ranker_secure=ranker_secure,
    )
    with MethodProgress(chosen) as phases:
        results = run_evaluation(config, out, progress=phases.say)
    console.print((__import__("pathlib").Path(out) / "report.md").read_text(encoding="utf-8"))
    console.print(f"wrote {', '.join(results['outputs'])}")


@sim_app.command("evaluate-text")
def evaluate_text_command(
    out: str = typer.Option(..., help="Output folder: results.json, report.md, text_eval.png."),
    data: str = typer.Option("../shared/datasets", help="Datasets folder (HuffPost headlines, browser fixtures)."),
    seed: int = typer.Option(0, help="Seed of the split, the devices and the tracking population."),
    limit: int | None = typer.Option(None, min=50, help="Only the first N headlines (a quick run)."),
    test_size: int = typer.Option(5000, min=1, help="Test headlines."),
    devices: int = typer.Option(100, min=1, help="Simulated devices holding the other headlines."),
    few_labels: int = typer.Option(50, min=1, help="Labels of the few-label (1%) methods."),
    rounds: int = typer.Option(100, min=1, help="Federated rounds of the head."),
    local_epochs: int = typer.Option(2, min=1, help="Local gradient steps per federated round."),
    federated: bool = typer.Option(True, "--federated/--no-federated", help="Federate the head with Flower."),
    federated_all_labels: bool = typer.Option(
        False, "--federated-all-labels", help="Also federate the head on every device's labels (~15 min more)."),
    users: int = typer.Option(200, min=1, help="Users of the text-only tracking population."),
    encoder: str | None = typer.Option(None, help="Encoder artifact (default: built once, cached in .vane/)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Categorisation and text-only tracking on HuffPost headlines; the real fixtures' share left 'other'."""
    from vane.simulations.progress import configure_output

    configure_output(verbose)
    from vane.simulations.text_eval import TextEvalConfig, run_text_eval

    config = TextEvalConfig(data=data, seed=seed, limit=limit, test_size=test_size, devices=devices,
                            few_labels=few_labels, fed_rounds=rounds, fed_local_epochs=local_epochs,
                            federated=federated, federated_all_labels=federated_all_labels,
                            tracking_users=users, encoder=encoder)
    results = run_text_eval(config, out)
    typer.echo((__import__("pathlib").Path(out) / "report.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {', '.join(results['outputs'])}")


@sim_app.command("headroom")
def headroom_command(
    dataset: str = typer.Option(..., help="taobao, movielens or synthetic."),
    out: str | None = typer.Option(None, help="Folder for headroom.json and headroom.md (printed either way)."),
    data: str | None = typer.Option(None, help="Dataset file or folder (default: ../shared/datasets)."),
    max_users: int | None = typer.Option(None, min=2, help="Only the first N users."),
) -> None:
    """How far a pooled ranker of each person's own history gets against repeat-last (a reference for targets)."""
    from rich.console import Console
    from vane.simulations.headroom import headroom_report, render_markdown

    console = Console()
    name = dataset.strip().lower()
    result = headroom_report(name, data, out, max_users=max_users, progress=console.print)
    console.print(render_markdown(name, result))


@sim_app.command("run")
def federated_run_command(
    dataset: str = typer.Option("synthetic", "--dataset", help="Only 'synthetic' is wired to this command."),
    clients: int = typer.Option(10, "--clients", help="Simulated users, one SuperNode each."),
    rounds: int = typer.Option(3, "--rounds"),
    fraction: float = typer.Option(1.0, "--fraction", help="Fraction of users trained per round."),
    out: str = typer.Option(".vane/runs/sim-run", "--out", help="Output directory (results.json, plots, checkpoints)."),
    strategy: str = typer.Option("fedavg", "--strategy", help="fedavg, fedadam, fedprox, fedtrimmedavg or krum."),
    local_epochs: int = typer.Option(8, "--local-epochs"),
    learning_rate: float = typer.Option(0.02, "--learning-rate"),
    seed: int = typer.Option(0, "--seed"),
    delta_float16: bool = typer.Option(False, "--delta-float16", help="Upload float16 deltas."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --out."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Run on this running Ray cluster (HOST:PORT of `ray start --head`, or auto)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Run a Flower simulation of federated training with the real ClientApp and ServerApp."""
    from vane.simulations.progress import configure_output

    configure_output(verbose)
    from vane.shared.errors import ConfigError
    from vane.shared.protocol import NDCG10_KEY
    from vane.shared.taxonomy import Taxonomy
    from vane.simulations.federation import run_federated
    from vane.simulations.synthetic import SyntheticPopulation

    if dataset != "synthetic":
        raise ConfigError(f"--dataset is {dataset!r}; `vane sim run` supports only 'synthetic' so far")
    pop = SyntheticPopulation(clients, seed=seed)
    result = run_federated(
        pop.users, Taxonomy(pop.categories), None, rounds=rounds, fraction=fraction, out_dir=out,
        strategy=strategy, local_epochs=local_epochs, learning_rate=learning_rate, seed=seed,
        delta_float16=delta_float16, resume=resume, ray_address=ray_address,
    )
    final = result.rounds[-1]["evaluate"] if result.rounds else {}
    typer.echo(f"{result.config['completed-rounds']} rounds in {result.wall_seconds:.0f} s; final hr@5 "
               f"{final.get('hr@5', float('nan')):.4f}, ndcg@10 {final.get(NDCG10_KEY, float('nan')):.4f}; "
               f"wrote {result.results_path} and {', '.join(str(p) for p in result.plots)}")


@sim_app.command("audit-privacy")
def audit_privacy_command(
    out: str = typer.Option(..., help="Output folder: audit.json, audit.md, the runs' message logs."),
    users: int = typer.Option(12, min=3, help="Synthetic users in the message audit and leakage runs."),
    seed: int = typer.Option(3, help="Population and training seed."),
    clipping_norm: float = typer.Option(0.5, min=0.0, help="Clipping norm of the leakage attack's DP settings."),
    secagg_noise: float = typer.Option(
        0.5, min=0.0, help="Noise multiplier of the SecAgg+ round with device clipping and server noise (0: skip it)."),
    utility_users: int = typer.Option(0, min=0, help="Also run utility vs privacy over this many users (0: skip)."),
    utility_rounds: int = typer.Option(8, min=1, help="Federated rounds of each utility run."),
    utility_fraction: float = typer.Option(
        0.1, min=0.0, max=1.0,
        help="Fraction of the utility users trained per round, drawn without replacement; ε is accounted for this "
             "sampling (replace-one) and also reported without amplification.",
    ),
    utility_fraction_evaluate: float = typer.Option(0.2, min=0.0, max=1.0,
                                                    help="Fraction of the utility users evaluated per round."),
    utility_clipping_norm: float = typer.Option(
        4.0, min=0.0, help="Clipping norm of the utility runs (about the median client delta norm of the default "
                           "spec, so that noise multiplier 0 still learns)."),
    utility_local_epochs: int = typer.Option(2, min=1, help="Local epochs per round in the utility runs."),
    utility_only: bool = typer.Option(False, help="Skip the message audit and leakage attack."),
    noise: str = typer.Option("0,0.5,1.0,2.0", help="Noise multipliers of the utility runs."),
    dp_delta: float = typer.Option(1e-4, help="δ at which the utility runs report ε (below 1/users)."),
) -> None:
    """Message audit (fails on any user data on the wire), item-set leakage attack, utility vs ε."""
    import json
    from pathlib import Path

    from vane.simulations.audit import (
        AuditConfig,
        PrivacyLeakError,
        UtilityConfig,
        markdown_table,
        run_audit,
        run_utility,
        write_report,
    )

    try:
        noise_levels = tuple(float(z) for z in noise.split(",") if z.strip())
    except ValueError:
        noise_levels = (float("nan"),)
    if not noise_levels or not all(0 <= z < float("inf") for z in noise_levels):
        raise typer.BadParameter(f"{noise!r}; expected comma-separated noise multipliers >= 0, e.g. 0,0.5,1.0",
                                 param_hint="--noise")
    if utility_only and not utility_users:
        from vane.shared.errors import ConfigError

        raise ConfigError("--utility-only needs --utility-users N (N > 0); otherwise there is nothing to run")
    report: dict[str, Any] = {}
    if not utility_only:
        config = AuditConfig(users=users, seed=seed, clipping_norm=clipping_norm, secagg_noise=secagg_noise or None)
        report = run_audit(out, config, progress=typer.echo)
    if utility_users:
        utility = UtilityConfig(
            users=utility_users, noise=noise_levels, rounds=utility_rounds,
            fraction=utility_fraction, fraction_evaluate=utility_fraction_evaluate,
            clipping_norm=utility_clipping_norm, dp_delta=dp_delta, local_epochs=utility_local_epochs, seed=seed,
        )
        rows = run_utility(Path(out) / "utility", utility, progress=typer.echo)
        if utility_only:
            typer.echo(markdown_table(rows))
            return
        report["utility"] = rows
        write_report(Path(out), report)
    typer.echo(Path(out, "audit.md").read_text(encoding="utf-8"))
    if not report["passed"]:
        raise PrivacyLeakError(f"user data crossed the wire; see {Path(out, 'audit.json')}: "
                               f"{json.dumps([m['findings'][:2] for m in report['messages'].values()])[:500]}")
