"""``vane server …``: model export, federated training and deployment.

TensorFlow and Flower are imported inside each command, never at module level.
"""

from __future__ import annotations

import typer

server_app = typer.Typer(no_args_is_help=True)
