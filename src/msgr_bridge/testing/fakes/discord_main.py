"""``python -m msgr_bridge.testing.fakes.discord``: the Discord fake on its own, seeded with a bot, a guild
with a channel and a person, to try the bridge offline. Lines typed on standard input are posted as that
person."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from .discord import DiscordFake


async def _main() -> None:
    parser = argparse.ArgumentParser(
        description="A local fake of Discord's bot API, for trying msgr-bridge offline"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999)
    args = parser.parse_args()
    fake = DiscordFake(host=args.host, port=args.port)
    await fake.start()
    bot, token = fake.add_bot("bridge-bot")
    person = fake.add_user("alice")
    guild = fake.add_guild("Fake Guild", [bot["id"], person["id"]])
    channel = fake.add_channel(guild["id"], "general")
    print(
        f"Discord fake on {fake.base_url}\n  api_base    = {fake.api_url}\n  gateway_url = {fake.gateway_url}"
    )
    print(
        f"  bot token   = {token}\n  guild {guild['id']}, channel #general {channel['id']},"
        f" alice {person['id']}"
    )
    print("Type a line to post it as alice in #general; Ctrl-C stops.")
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, input):
        fake.post(channel["id"], person["id"], line)


def run() -> None:
    with contextlib.suppress(KeyboardInterrupt, EOFError):
        asyncio.run(_main())
