"""The shipped browser extension and dashboard files: the extension's fixed ID, ``write_extension`` and
``vane client extension``, and static rules of the page code (no HTML from strings, nothing fetched
from elsewhere). Their behaviour in a real browser is tested in tests/browser/."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from vane.client.extension import EXTENSION_ID, EXTENSION_ORIGIN, FILES, extension_id, manifest, write_extension
from vane.shared.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "client" / "dashboard"
EXTENSION = ROOT / "client" / "extension"


def test_extension_id_is_chromiums_derivation_of_the_manifest_key() -> None:
    der = base64.b64decode(manifest()["key"])
    key = load_der_public_key(der)  # a real SubjectPublicKeyInfo
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    digest = hashlib.sha256(der).hexdigest()[:32]
    assert EXTENSION_ID == digest.translate(str.maketrans("0123456789abcdef", "abcdefghijklmnop"))
    assert re.fullmatch("[a-p]{32}", EXTENSION_ID)
    assert EXTENSION_ORIGIN == f"chrome-extension://{EXTENSION_ID}"
    with pytest.raises(ConfigError, match="not valid base64"):
        extension_id("not base64!")


def test_manifest_is_mv3_loopback_only() -> None:
    data = manifest()
    assert data["manifest_version"] == 3
    assert data["background"]["service_worker"] == "background.js"
    assert set(data["host_permissions"]) == {"http://127.0.0.1/*", "http://localhost/*"}
    assert data["incognito"] == "not_allowed"
    assert "unsafe" not in data["content_security_policy"]["extension_pages"]
    referenced = {data["background"]["service_worker"], data["action"]["default_popup"], data["options_ui"]["page"]}
    assert referenced <= set(FILES)


def test_write_extension_writes_every_file_and_the_port(tmp_path: Path) -> None:
    out = write_extension(tmp_path / "ext", port=9123)
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, "defaults.json"])
    assert json.loads((out / "defaults.json").read_text()) == {"port": 9123}
    assert (out / "manifest.json").read_bytes() == (EXTENSION / "manifest.json").read_bytes()
    write_extension(out, port=9124)  # its own earlier copy is updated in place
    assert json.loads((out / "defaults.json").read_text()) == {"port": 9124}


def test_write_extension_refuses_bad_ports_and_foreign_folders(tmp_path: Path) -> None:
    for port in (0, 65536, True, "8741"):
        with pytest.raises(ConfigError, match=f"port {port!r} is not valid"):
            write_extension(tmp_path / "a", port=port)  # type: ignore[arg-type]
    assert not (tmp_path / "a").exists()
    foreign = tmp_path / "b"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty and holds no Vane extension"):
        write_extension(foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    (tmp_path / "c").write_text("a file")
    with pytest.raises(ConfigError, match="is a file"):
        write_extension(tmp_path / "c")


def test_cli_writes_the_extension(tmp_path: Path) -> None:
    code = "from vane.client.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "client", "extension", "--out", str(tmp_path / "x"),
                           "--port", "8800"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert EXTENSION_ID in done.stdout.replace("\n", "")
    assert json.loads((tmp_path / "x" / "defaults.json").read_text()) == {"port": 8800}
    bad = subprocess.run([sys.executable, "-c", code, "client", "extension", "--out", str(tmp_path / "y"),
                          "--port", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--port" in bad.stderr and not (tmp_path / "y").exists()


@pytest.mark.parametrize("path", sorted([*DASHBOARD.glob("*.js"), *EXTENSION.glob("*.js")]), ids=lambda p: p.name)
def test_page_code_never_builds_html_from_strings(path: Path) -> None:
    code = re.sub(r"(?m)^\s*//.*$", "", path.read_text())  # comments may name what is avoided
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "setAttribute(\"style\""):
        assert sink not in code, f"{path.name} uses {sink}"


@pytest.mark.parametrize("path", sorted([*DASHBOARD.iterdir(), *EXTENSION.glob("*.[hjc]*")]), ids=lambda p: p.name)
def test_nothing_is_fetched_from_another_host(path: Path) -> None:
    text = re.sub(r"(?m)^\s*//.*$", "", path.read_text())  # whole-line comments may give examples
    hosts = set(re.findall(r"https?://([^/\"'`\s]+)", text))
    assert hosts <= {"127.0.0.1", "localhost", "127.0.0.1:", "www.w3.org"}, f"{path.name} names {hosts}"


def test_dashboard_has_a_strict_csp_and_no_inline_script() -> None:
    page = (DASHBOARD / "index.html").read_text()
    csp = re.search(r'http-equiv="Content-Security-Policy"\s+content="([^"]+)"', page)
    assert csp is not None
    assert "default-src 'self'" in csp.group(1) and "unsafe" not in csp.group(1)
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/app.js" defer>']
    for html in [page, *(p.read_text() for p in EXTENSION.glob("*.html"))]:
        assert not re.search(r"<[^>]*\son\w+\s*=", html, flags=re.I)  # no inline event handlers
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # no inline script
