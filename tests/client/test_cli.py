"""The root ``vane`` command finds its server and simulation commands through entry points."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points

import pytest
import typer
from typer.testing import CliRunner
from vane.client import cli


def test_every_registered_plugin_loads_as_a_group_or_a_command() -> None:
    plugins = {ep.name: ep.load() for ep in entry_points(group=cli.ENTRY_POINT_GROUP)}

    assert set(plugins) == {"server", "sim", "demo"}
    assert isinstance(plugins["server"], typer.Typer) and isinstance(plugins["sim"], typer.Typer)
    assert callable(plugins["demo"]) and not isinstance(plugins["demo"], typer.Typer)


def test_help_lists_the_client_and_every_plugin() -> None:
    result = CliRunner().invoke(cli.build_app(["--help"]), ["--help"], prog_name="vane")

    assert result.exit_code == 0
    for command in ("client", "server", "sim", "demo"):
        assert f" {command} " in result.output


@pytest.mark.parametrize("group", ["client", "server", "sim"])
def test_each_group_answers_help(group: str) -> None:
    result = CliRunner().invoke(cli.build_app([group, "--help"]), [group, "--help"], prog_name="vane")

    assert result.exit_code == 0, result.output
    assert f"vane {group} [OPTIONS] COMMAND" in result.output


def test_a_client_command_loads_no_plugin() -> None:
    code = (
        "import sys\n"
        "from vane.client.cli import build_app\n"
        "build_app(['client', 'profile'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('vane.server', 'vane.simulations'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_plugin_that_cannot_import_prints_the_install_hint(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    ghost = EntryPoint(name="ghost", value="vane_not_installed.cli:app", group=cli.ENTRY_POINT_GROUP)
    monkeypatch.setattr(cli, "entry_points", lambda group: [ghost])

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ghost"])

    assert exit_info.value.code == 2
    assert "pip install 'vane[server]'" in capsys.readouterr().err
