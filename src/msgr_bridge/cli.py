"""The ``msgr-bridge`` command line: run, migrate, plugins, config check, accounts, outbox, audit, tokens.

Every failure the operator can act on is a ``BridgeError``; it is printed with its hint and ends the process
with the exit code of its family (config 2, database 3, plugins 4, credentials 5), so scripts and container
supervisors can tell them apart.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import anyio

from . import __version__
from .errors import BridgeError, ConfigError, PluginError, exit_code_for

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _settings(args: argparse.Namespace) -> Any:
    from .config import load_settings

    data_dir = getattr(args, "data_dir", None)
    overrides = {"bridge": {"data_dir": str(Path(data_dir).resolve())}} if data_dir else None
    return load_settings(Path(args.config) if args.config else None, overrides=overrides)


def existing_database(settings: Any) -> Any:
    """The bridge's database for a tool: refused when its SQLite file does not exist (never created)."""
    from .store.db import Database

    db = Database(settings.database.url)
    db.refuse_missing_file()
    return db


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


# --- commands ---------------------------------------------------------------------------------------------


async def cmd_run(args: argparse.Namespace) -> int:
    from .app import run_bridge

    settings = _settings(args)
    return await run_bridge(settings, host=args.host, port=args.port)


async def cmd_migrate(args: argparse.Namespace) -> int:
    from .store.db import Database

    settings = _settings(args)
    db = Database(settings.database.url)
    await db.connect()
    try:
        before = await db.current_revision()
        await db.migrate()
        after = await db.current_revision()
    finally:
        await db.close()
    print(f"database {db.redacted_url}: {before or 'empty'} -> {after}")
    return 0


async def cmd_plugins(args: argparse.Namespace) -> int:
    from .connectors.base import describe
    from .plugins import PluginManager

    settings = _settings(args)
    registry = PluginManager(allow=settings.plugins.allow, deny=settings.plugins.deny).load()
    connectors = [
        describe(cls) | {"plugin": registry.connector_sources[net]}
        for net, cls in sorted(registry.connectors.items())
    ]
    if args.json:
        _print_json({"connectors": connectors, "plugins": [r.as_dict() for r in registry.reports]})
    else:
        for c in connectors:
            caps = [k for k, v in c["capabilities"].items() if v is True]
            what = f"[{', '.join(caps)}]" if c["supported"] else f"unsupported: {c['unsupported_reason']}"
            print(f"{c['network']:<12} {c['version']:<8} {c['display_name']}  {what}")
        for r in registry.reports:
            if r.error:
                print(f"ERROR  plugin {r.name} ({r.source}): {r.error}", file=sys.stderr)
            elif r.skipped_reason:
                print(f"skipped plugin {r.name}: {r.skipped_reason}", file=sys.stderr)
    if registry.errors:
        names = ", ".join(r.name for r in registry.errors)
        raise PluginError(
            f"{len(registry.errors)} plugin(s) failed: {names}",
            hint="see the errors above; fix or uninstall the plugin, or add it to [plugins] deny",
        )
    return 0


async def cmd_config_check(args: argparse.Namespace) -> int:
    from .config import effective_config
    from .plugins import PluginManager
    from .sdk.settings import check_network_tables

    settings = _settings(args)
    _print_json(effective_config(settings))
    registry = PluginManager(allow=settings.plugins.allow, deny=settings.plugins.deny).load()
    problems, notes = check_network_tables(settings.networks, registry.connectors)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if problems:
        print("configuration invalid:\n" + "\n".join(problems), file=sys.stderr)
        return ConfigError.exit_code
    print("configuration OK", file=sys.stderr)
    return 0


async def cmd_accounts_list(args: argparse.Namespace) -> int:
    from .store.repos.accounts import AccountRepo
    from .store.repos.connector_state import ConnectorStateRepo
    from .sync.progress import MAX_CONVERSATIONS, as_json, stored_progress, summary, summary_line

    db = existing_database(_settings(args))
    await db.connect()
    try:
        await db.check_schema()
        accounts = await AccountRepo(db).list()
        progress = {
            a.id: await stored_progress(ConnectorStateRepo(db), a.to_schema(), MAX_CONVERSATIONS)
            for a in accounts
        }
    finally:
        await db.close()
    rows = [
        a.to_schema().model_dump(mode="json")
        | {
            "state_reason": a.state_reason,
            "settings": dict(a.settings),
            "sync": summary([as_json(p) for p in progress[a.id]]),
        }
        for a in accounts
    ]
    if args.json:
        _print_json(rows)
    else:
        for a in rows:
            line = f"{a['id']:<24} {a['network']:<10} {a['remote_user_id']:<30} {a['state']:<20}"
            print(f"{line} {summary_line(a['sync'])}".rstrip())
        if not rows:
            print("no linked accounts", file=sys.stderr)
    return 0


# --- parser -----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msgr-bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"msgr-bridge {__version__}")
    parser.add_argument(
        "--config",
        "-c",
        default=None,
        help="TOML config file (default: $MSGR_BRIDGE_CONFIG, else ./config/msgr-bridge.toml if present)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the bridge's data directory (default: [bridge] data_dir, relative to the config file's place; "
        "$MSGR_BRIDGE__BRIDGE__DATA_DIR)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start the bridge (API, connectors, pipelines)")
    run.add_argument("--host", default=None, help="API address (default [api] host, 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="API port (default [api] port, 8080)")
    run.set_defaults(handler=cmd_run)

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(handler=cmd_migrate)

    plugins = sub.add_parser("plugins", help="list plugins and the connectors they provide")
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(handler=cmd_plugins)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    config_sub.add_parser(
        "check", help="validate and print the effective config, secrets redacted"
    ).set_defaults(handler=cmd_config_check)

    accounts = sub.add_parser("accounts", help="linked accounts")
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True, metavar="COMMAND")
    acc_list = accounts_sub.add_parser("list", help="list linked accounts and their connection state")
    acc_list.add_argument("--json", action="store_true")
    acc_list.set_defaults(handler=cmd_accounts_list)
    from . import cli_outbox, cli_security

    cli_outbox.register(sub)
    cli_security.register(sub)
    return parser


def event_loop_options() -> dict[str, Any]:
    """anyio's asyncio options: uvloop where it is installed (it is a dependency except on Windows)."""
    return {"use_uvloop": True} if importlib.util.find_spec("uvloop") else {}


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop ``msgr-bridge run`` uses (uvloop where installed), for scripts and benchmarks."""
    if importlib.util.find_spec("uvloop"):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    from .observability.logging import configure_logging

    # Tools print their results on stdout; logs go to stderr (``run`` reconfigures from [logging]).
    configure_logging("warning", "auto")
    try:
        return anyio.run(handler, args, backend_options=event_loop_options())
    except BridgeError as exc:
        print(f"msgr-bridge: error: {exc.explain()}", file=sys.stderr)
        return exit_code_for(exc)
    except BaseExceptionGroup as group:
        # a start-up failure inside the bridge's task groups (the API's storage or share-link key) arrives
        # wrapped once per group: when a BridgeError is all there is, say it like any other
        match, rest = group.split(BridgeError)
        if match is None or rest is not None:
            raise
        error: BaseException = match
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        print(f"msgr-bridge: error: {error}", file=sys.stderr)
        return exit_code_for(error)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
