"""The Prosody fixture module: a real server on a random loopback port, restartable, cleaned up."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from msgr_bridge.errors import ConfigError
from msgr_bridge.testing.prosody import running_prosody, start_prosody


def accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_start_register_restart_stop() -> None:
    with running_prosody() as server:
        assert server.running and accepts(server.c2s_port)
        assert server.register("alice", "alicepw") == "alice@localhost"
        accounts = server.directory / "data" / "localhost" / "accounts"
        assert (accounts / "alice.dat").exists()
        port = server.c2s_port
        server.stop()
        assert not server.running and not accepts(port)
        server.start()
        assert server.c2s_port == port and accepts(port)
        assert (accounts / "alice.dat").exists()
        settings = server.connection_settings()
        assert settings == {"server": "127.0.0.1", "port": port, "security": "plaintext"}
        directory = server.directory
    assert not directory.exists()


def test_tls_server_has_a_certificate_and_requires_encryption() -> None:
    with running_prosody(tls=True) as server:
        assert server.ca_file is not None and "BEGIN CERTIFICATE" in Path(server.ca_file).read_text()
        assert "c2s_require_encryption = true" in server.config_path.read_text()
        assert server.connection_settings()["security"] == "starttls"


def test_missing_binary_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="prosody is not installed"):
        start_prosody()
