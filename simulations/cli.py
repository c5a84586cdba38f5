"""``vane sim …``: simulations, evaluation, privacy audits and benchmarks."""

from __future__ import annotations

import typer

sim_app = typer.Typer(no_args_is_help=True)

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: the model, the device SDK.")
sim_app.add_typer(bench_app, name="bench")


@bench_app.command("model")
def bench_model_command(
    spec_path: str | None = typer.Option(None, "--spec", help="ModelSpec JSON file; the default spec if omitted."),
    train_steps: int = typer.Option(300, help="TF steps on synthetic sessions before export (for top-1 agreement)."),
) -> None:
    """Step/infer/train speed, export sizes, quantization agreement and client RSS of the LiteRT model."""
    from vane.shared.spec import ModelSpec
    from vane.simulations.bench_model import print_report, run_model_bench

    spec = ModelSpec.load(spec_path) if spec_path else ModelSpec()
    print_report(run_model_bench(spec, train_steps=train_steps))


@bench_app.command("client")
def bench_client_command(
    categories: int = typer.Option(64, min=2, help="Taxonomy size of the benchmark model."),
) -> None:
    """record()/record_many()/interests()/predict() speed, RSS and import time of the device SDK."""
    from vane.simulations.bench_client import print_report, run

    print_report(run(num_categories=categories))
