"""The ``vane`` command line: ``vane client …``, ``vane server …``, ``vane sim …``.

Only this module and the client group are imported at start-up; the server and
simulation groups import TensorFlow and Flower lazily inside their commands, so
``vane client …`` stays as light as the device SDK.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from vane.client.cli_client import client_app

app = typer.Typer(
    name="vane",
    help="Vane: private, on-device interest tracking with federated training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(client_app, name="client", help="Inspect and manage the interest history on this device.")

err = Console(stderr=True)


def _add_optional_groups() -> None:
    """Attach the server and simulation groups; they need the server extra."""
    try:
        from vane.server.cli import server_app

        app.add_typer(server_app, name="server", help="Models, federated training and deployment.")
    except ImportError as exc:  # pragma: no cover - depends on the install
        _missing("server", exc)
    try:
        from vane.simulations.cli import sim_app

        app.add_typer(sim_app, name="sim", help="Simulations, evaluation, audits and benchmarks.")
    except ImportError as exc:  # pragma: no cover - depends on the install
        _missing("sim", exc)


def _missing(group: str, exc: ImportError) -> None:
    stub = typer.Typer(help=f"(unavailable: {exc}) install with: pip install 'vane[server]'")

    @stub.callback(invoke_without_command=True)
    def _unavailable() -> None:
        err.print(f"[red]vane {group}[/red] needs the server extra: pip install 'vane[server]' ({exc})")
        raise typer.Exit(2)

    app.add_typer(stub, name=group)


@app.command()
def demo() -> None:
    """The main job: a federated run on the built-in synthetic population."""
    from vane.simulations.demo import run_demo

    raise typer.Exit(run_demo())


def main() -> None:
    """Console-script entry point."""
    _add_optional_groups()
    from vane.shared.errors import VaneError

    try:
        app()
    except VaneError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
