"""``vane server …``: model export, federated training and deployment.

TensorFlow and Flower are imported inside each command, never at module level.
"""

from __future__ import annotations

import typer

server_app = typer.Typer(no_args_is_help=True)


@server_app.command("export-model")
def export_model(
    out: str = typer.Argument(..., help="Where to write the .tflite model."),
    spec_path: str | None = typer.Option(None, "--spec", help="ModelSpec JSON file; the default spec if omitted."),
    weights_path: str | None = typer.Option(None, "--weights", help="Vane weights file to bake in."),
    inference_only: bool = typer.Option(False, "--inference-only", help="Export only infer and step."),
    quantize: str | None = typer.Option(None, "--quantize", help="f16 or int8 (inference-only exports)."),
) -> None:
    """Export the interest model as a LiteRT file that runs with builtins only."""
    from vane.shared.errors import ConfigError
    from vane.shared.spec import ModelSpec
    from vane.shared.weights import Weights

    if quantize not in (None, "f16", "int8"):
        raise ConfigError(f"--quantize is {quantize!r}; expected f16 or int8")
    if quantize is not None and not inference_only:
        raise ConfigError("--quantize needs --inference-only: training exports stay float32")
    spec = ModelSpec.load(spec_path) if spec_path else ModelSpec()
    weights = Weights.load(weights_path) if weights_path else None

    from vane.server.model import build_model, export_inference_model, export_training_model

    model = build_model(spec, weights)
    if inference_only:
        blob = export_inference_model(model, out, quantize=quantize)
    else:
        blob = export_training_model(model, out)
    kind = f"inference-only ({quantize or 'float32'})" if inference_only else "training"
    typer.echo(f"wrote {out}: {kind} model of spec {spec.hash}, {len(blob) / 1e6:.2f} MB")
