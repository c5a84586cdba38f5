"""The ``vane`` command line: ``vane client …`` here, everything else from plug-ins.

The client group is part of the device SDK. Other packages add their commands
through the ``vane.cli`` entry-point group (see ``[project.entry-points."vane.cli"]``
in pyproject.toml): a ``typer.Typer`` becomes a command group (``vane server …``,
``vane sim …``), a function becomes a command (``vane demo``). The client therefore
never imports the server or the simulations; it only looks up what is installed.
Only the entry point that the command line names is loaded, so ``vane client …``
stays as light as the device SDK; ``vane --help`` loads them all to list them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from vane.client.cli_client import client_app
from vane.client.cli_views import literal
from vane.shared.errors import VaneError

#: The entry-point group other packages register their commands under.
ENTRY_POINT_GROUP = "vane.cli"
#: What a plug-in needs when it fails to import.
INSTALL_HINT = "pip install 'vane[server]'"

err = Console(stderr=True)


def build_app(argv: Sequence[str] = ()) -> typer.Typer:
    """The root command, with the plug-ins that ``argv`` (the arguments after ``vane``) can reach.

    Parameters
    ----------
    argv : sequence of str, default ()
        When its first word names a plug-in, only that plug-in is loaded; when it names
        ``client``, none is; otherwise (``--help``, no command, a typo) all of them are.
    """
    app = typer.Typer(
        name="vane",
        help="Vane: private, on-device interest tracking with federated training.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root_options)
    app.add_typer(client_app, name="client", help="Inspect and manage the interest history on this device.")
    for plugin in _plugins_for(argv):
        _attach(app, plugin)
    return app


def installed_version() -> str:
    """The installed distribution's version (``vane --version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vane")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        print(f"vane {installed_version()}")
        raise typer.Exit(0)


def _root_options(
    show_version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                      help="Print the version and exit."),
) -> None:
    """Vane: private, on-device interest tracking with federated training."""


def _plugins_for(argv: Sequence[str]) -> list[EntryPoint]:
    plugins = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    command = next((word for word in argv if not word.startswith("-")), None)
    if command == "client":
        return []
    named = [ep for ep in plugins if ep.name == command]
    return named or plugins


def _attach(app: typer.Typer, plugin: EntryPoint) -> None:
    """Add ``plugin`` as a group or a command; a stub that prints the install hint if it cannot load."""
    try:
        target = plugin.load()
    except ImportError as exc:
        app.add_typer(_unavailable(plugin.name, exc), name=plugin.name)
        return
    if isinstance(target, typer.Typer):
        app.add_typer(target, name=plugin.name)
    elif callable(target):
        app.command(plugin.name)(target)
    else:
        raise TypeError(f"entry point {plugin.name!r} = {plugin.value!r} is neither a typer.Typer nor a function")


def _unavailable(name: str, exc: ImportError) -> typer.Typer:
    stub = typer.Typer(help=f"(unavailable: {exc}) install with: {INSTALL_HINT}")

    @stub.callback(invoke_without_command=True)
    def _explain() -> None:
        err.print(f"[red]vane {name}[/red] needs the server extra: {escape(INSTALL_HINT)} ({escape(str(exc))})")
        raise typer.Exit(2)

    return stub


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point; exits with :func:`run`'s code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``vane``; ``sys.argv[1:]`` by default.
    """
    sys.exit(run(list(sys.argv[1:] if argv is None else argv)))


def run(args: list[str]) -> int:
    """Run the command ``args`` names and return its exit code.

    Exit codes: 0 success, 1 a runtime error (a :class:`VaneError` or an operating-system error),
    2 a usage error (an unknown command or option, a value of the wrong form), 130 interrupted. An error is one line
    on stderr (``error: …``), or, when ``--json`` was given, one JSON object
    ``{"error": message, "type": class name}``; never a traceback.
    """
    as_json = "--json" in args
    try:
        result = build_app(args)(args=args, prog_name="vane", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        err.print(Text(exc.format_message()))
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.exceptions.Abort:
        return _report("aborted", "Abort", as_json, 1)
    except click.exceptions.UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
        return _report(f"{where}{exc.format_message()} (see --help)", type(exc).__name__, as_json, 2)
    except click.exceptions.ClickException as exc:
        return _report(exc.format_message(), type(exc).__name__, as_json, 1)
    except VaneError as exc:
        return _report(str(exc), type(exc).__name__, as_json, 1)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename is not None else ""
        return _report(f"{exc.strerror or exc}{where}", type(exc).__name__, as_json, 1)
    except KeyboardInterrupt:
        return _report("interrupted", "KeyboardInterrupt", as_json, 130)
    return result if isinstance(result, int) else 0


def _report(message: str, kind: str, as_json: bool, code: int) -> int:
    """Print one error line (or one JSON object) on stderr and return ``code``."""
    one_line = " ".join(message.split())
    if as_json:
        print(json.dumps({"error": literal(one_line), "type": kind}), file=sys.stderr)
    else:
        err.print(Text.assemble(("error:", "red"), " ", literal(one_line)), soft_wrap=True)
    return code
