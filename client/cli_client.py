"""``vane client …``: commands for a person inspecting their own device."""

from __future__ import annotations

import typer

client_app = typer.Typer(no_args_is_help=True)
