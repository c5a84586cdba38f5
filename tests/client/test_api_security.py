"""The local API's guards over a real server: token, origins, Host, loopback bind, token file, body limit,
one owner of the store, clean stop."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_server import VANE, running
from vane.client.api.tokens import check_bind, ensure_token, is_loopback, read_token
from vane.client.extension import EXTENSION_ORIGIN
from vane.client.tracker import InterestTracker
from vane.shared.errors import ConfigError, KeyFileError

EVENT = {"item_id": "a", "timestamp": 1_709_280_000, "kind": "view", "categories": ["news"]}


def vane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VANE, *args], capture_output=True, text=True, timeout=60)


def new_store(tmp_path: Path) -> Path:
    store = tmp_path / "s.db"
    with InterestTracker.open(store, key_file=tmp_path / "s.db.key") as tracker:
        tracker.record(EVENT)
    return store


def test_no_token_or_a_wrong_one_gets_401(tmp_path: Path) -> None:
    with running(new_store(tmp_path)) as api:
        for headers in ({}, {"Authorization": "Bearer " + "x" * len(api.token)},
                        {"Authorization": f"Basic {api.token}"}, {"Authorization": api.token},
                        {"Authorization": f"Bearer {api.token[:-1]}"}):
            for method, path in (("GET", "/api/health"), ("GET", "/api/export"), ("GET", "/api/openapi.json"),
                                 ("POST", "/api/forget")):
                answer = httpx.request(method, api.url + path, headers=headers, json={"everything": True})
                assert answer.status_code == 401, (headers, path)
                assert answer.json()["error"]["type"] == "Unauthorized"
        assert api.client.get("/api/health").json()["events"] == 1  # nothing was forgotten


def test_other_origins_get_403_and_the_extension_origin_gets_cors(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    ours = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"
    with running(store, "--extension-origin", ours) as api:
        for origin in ("http://evil.example", "null", EXTENSION_ORIGIN, api.url.replace("127.0.0.1", "127.0.0.2")):
            answer = api.client.get("/api/health", headers={"Origin": origin})
            assert answer.status_code == 403, origin
            assert answer.json()["error"]["type"] == "OriginNotAllowed"
            assert "access-control-allow-origin" not in answer.headers
            preflight = httpx.options(api.url + "/api/events", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"})
            assert preflight.status_code == 403
        assert api.client.post("/api/events", json=EVENT | {"item_id": "b"},
                               headers={"Origin": "http://evil.example"}).status_code == 403
        allowed = api.client.get("/api/health", headers={"Origin": ours})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ours
        preflight = httpx.options(api.url + "/api/events", headers={
            "Origin": ours, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ours
        assert set(preflight.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST", "DELETE"}
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        same_site = api.client.get("/api/health", headers={"Origin": api.url})  # the dashboard's own origin
        assert same_site.status_code == 200 and "set-cookie" not in same_site.headers
        rebinding = api.client.get("/api/health", headers={"Host": "evil.example:80"})
        assert rebinding.status_code == 403 and rebinding.json()["error"]["type"] == "HostNotAllowed"
        assert api.client.get("/api/health").json()["events"] == 1
    with running(store) as api:  # without --extension-origin: the shipped extension's
        answer = api.client.get("/api/health", headers={"Origin": EXTENSION_ORIGIN})
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == EXTENSION_ORIGIN


def test_bodies_over_the_limit_get_413_by_length_and_while_streaming(tmp_path: Path) -> None:
    with running(new_store(tmp_path), "--max-body-bytes", "4096") as api:
        big = {"events": [EVENT | {"item_id": f"i{i}", "timestamp": 1_709_280_000 + i} for i in range(200)]}
        declared = api.client.post("/api/events", json=big)
        assert declared.status_code == 413 and declared.json()["error"]["type"] == "RequestTooLarge"
        assert "4096 bytes" in declared.json()["error"]["message"]

        def chunks() -> Iterator[bytes]:
            yield b'{"events": ['
            for i in range(400):
                yield (b"" if i == 0 else b",") + b'{"item_id": "x%d", "timestamp": 1709280000, "kind": "view"}' % i
            yield b"]}"

        streamed = httpx.post(api.url + "/api/events", content=chunks(),
                              headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"})
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413
        small = api.client.post("/api/events", json=EVENT | {"item_id": "small", "timestamp": 1_709_290_000})
        assert small.status_code == 200
        assert api.client.get("/api/health").json()["events"] == 2


def test_a_non_loopback_bind_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "example.com", "::"):
        done = vane("client", "serve", "--store", str(tmp_path / "s.db"), "--host", host, "--port", "0")
        assert done.returncode == 1, done
        assert f"--host '{host}' is not a loopback address" in done.stderr and "--unsafe-bind" in done.stderr
    assert list(tmp_path.iterdir()) == []
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"))
    with pytest.raises(ConfigError, match="not a loopback address"):
        check_bind("10.0.0.1", unsafe_bind=False)
    check_bind("10.0.0.1", unsafe_bind=True)


def test_the_token_file_is_0600_and_an_unsafe_one_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    first = vane("client", "token", "--store", str(store))
    assert first.returncode == 0, first
    token_file = tmp_path / "s.db.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert first.stdout.strip() == token_file.read_text().strip() and len(first.stdout.strip()) >= 43
    assert vane("client", "token", "--store", str(store)).stdout == first.stdout  # the same token again
    token_file.chmod(0o644)
    refused = vane("client", "token", "--store", str(store))
    assert refused.returncode == 1 and "has mode 0644" in refused.stderr and "chmod 600" in refused.stderr
    with pytest.raises(KeyFileError, match="has mode 0644"):
        read_token(token_file)
    served = vane("client", "serve", "--store", str(store), "--port", "0")
    assert served.returncode == 1 and "has mode 0644" in served.stderr
    token_file.unlink()
    (tmp_path / "elsewhere").write_text("A" * 43 + "\n")
    (tmp_path / "elsewhere").chmod(0o600)
    token_file.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeyFileError, match="symbolic link"):
        ensure_token(store)
    token_file.unlink()
    token_file.write_text("not a token\n")
    token_file.chmod(0o600)
    with pytest.raises(KeyFileError, match="does not hold a token"):
        read_token(token_file)
    token_file.unlink()
    old = os.umask(0)
    try:
        token, path, created = ensure_token(store)
    finally:
        os.umask(old)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600 and read_token(path) == token


def test_the_store_has_one_owner_and_a_refused_command_names_the_pid_and_url(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    with running(store) as api:
        pid = api.proc.pid
        assert (tmp_path / "s.db.server.json").exists()
        for args in (("client", "forget", "--store", str(store), "--everything"),
                     ("client", "serve", "--store", str(store), "--port", "0")):
            refused = vane(*args)
            assert refused.returncode == 1, refused
            message = " ".join(refused.stderr.split())
            assert f"in use by PID {pid}" in message and api.url in message, message
        assert api.client.get("/api/health").json()["events"] == 1
        api.client.post("/api/events", json=EVENT | {"item_id": "late", "timestamp": 1_709_290_000})
        assert api.stop(signal.SIGINT) == 0  # Ctrl-C: a clean stop
    assert not (tmp_path / "s.db.server.json").exists() and not (tmp_path / "s.db.lock").exists()
    with InterestTracker.open(store, key_file=tmp_path / "s.db.key") as tracker:
        assert tracker.store.count() == 2
    done = vane("client", "forget", "--store", str(store), "--everything", "--json")
    assert done.returncode == 0 and '"removed": 2' in done.stdout
