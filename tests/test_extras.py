"""The embedded default needs no optional package; a missing one the config asks for names its extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from msgr_bridge.errors import ConfigError
from msgr_bridge.extras import EXTRAS, import_extra

# Every module an extra provides is refused at import, then the embedded default is migrated, started and
# asked for /health: proof it needs none of them (and that none is imported on the way).
_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from importlib.abc import MetaPathFinder

    BLOCKED = {blocked!r}

    class Refuse(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED or name in BLOCKED:
                raise ImportError(f"blocked for this test: {{name}}")
            return None

    sys.meta_path.insert(0, Refuse())

    import aiohttp
    from msgr_bridge.app import Bridge
    from msgr_bridge.config import load_settings

    data = {data!r}
    settings = load_settings(overrides={{
        "bridge": {{"data_dir": data, "shutdown_timeout_s": 5}},
        "database": {{"url": "sqlite+aiosqlite:///" + data + "/bridge.db"}},
        "api": {{"port": 0}},
        "plugins": {{"allow": ["loopback", "irc", "xmpp"]}},
    }})

    async def go():
        from msgr_bridge.store.db import Database
        db = Database(settings.database.url)
        await db.connect()
        await db.migrate()
        await db.close()
        async with Bridge(settings).running() as bridge:
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{{bridge.api.bound_port}}/health"
                async with http.get(url) as resp:
                    status = resp.status
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED or m in BLOCKED)
        print(json.dumps({{"status": status, "loaded": loaded}}))

    asyncio.run(go())
    """
)


def test_the_embedded_default_runs_without_any_extra(tmp_path: Path) -> None:
    blocked = sorted({m for modules in EXTRAS.values() for m in modules})
    script = _SCRIPT.format(blocked=blocked, data=str(tmp_path / "data"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == '{"status": 200, "loaded": []}', proc.stdout


def test_a_missing_extra_names_the_setting_and_the_install_command() -> None:
    with pytest.raises(ConfigError) as err:
        import_extra("msgr_bridge_no_such_module", extra="vault", wanted_by='[credentials] backend = "vault"')
    text = str(err.value)
    assert '[credentials] backend = "vault"' in text
    assert "pip install 'msgr-bridge[vault]'" in text


def test_the_core_dependencies_exclude_every_extra() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for package in ("asyncpg", "redis", "hvac", "aiobotocore"):
        assert package not in core, f"{package} is a core dependency; it belongs in an extra"
    assert set(project["optional-dependencies"]) >= {"postgres", "redis", "vault", "s3", "all"}
