"""Run the fake Telegram on its own, to try the bridge offline::

    python -m msgr_bridge.testing.fakes.telegram [--port 8443] [--echo]

It creates two users, "You" (phone 15550001, login code 12345, 2FA password "secret") and "Friend"
(15550002), a basic group, a supergroup and a forum with both in it. Start the bridge with
``MSGR_BRIDGE_TELEGRAM_TEST_SERVER=127.0.0.1:<port>`` and link "You" through ``POST /v1/links``. With
``--echo``, Friend answers every message you send them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from . import FakeTelegram


async def serve(port: int, echo: bool) -> None:
    fake = await FakeTelegram(port=port).start()
    world = fake.world
    you = world.add_user("You", "15550001", password="secret", username="you")
    friend = world.add_user("Friend", "15550002", username="friend")
    you.contacts.add(friend.id)
    friend.contacts.add(you.id)
    world.create_group("Basic group", [you, friend])
    world.create_channel("Supergroup", [you], owner=friend)
    forum = world.create_channel("Forum", [you], owner=friend, forum=True)
    world.create_topic(friend, forum, "General")
    world.send(friend, you, "Welcome to the fake Telegram")
    print(f"fake Telegram listening on {fake.address}")
    print(f"  export MSGR_BRIDGE_TELEGRAM_TEST_SERVER={fake.address}")
    print("  link phone 15550001, code 12345, password 'secret'")
    seen = 0
    while True:
        fake.changed.clear()
        await fake.changed.wait()
        if not echo:
            continue
        for post in list(friend.posts.values())[seen:]:
            if post.sender == you.id and post.place[0] == "user" and post.action is None:
                world.send(friend, you, f"echo: {post.text}")
        seen = len(friend.posts)


def main() -> None:
    parser = argparse.ArgumentParser(description="a fake Telegram MTProto server for msgr-bridge")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--echo", action="store_true", help="Friend echoes what you send them")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.echo))


if __name__ == "__main__":
    main()
