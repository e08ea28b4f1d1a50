"""``python -m msgr_bridge.testing.fakes.slack``: a fake Slack workspace to try the bridge offline.

It creates users ``me`` (the account to link) and ``alice``, a public channel ``#general``, a private
channel and a DM, prints the tokens and the settings to link with, and has ``alice`` post a message every
``--chatter`` seconds (0: never). Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools

from .server import FakeSlack


async def main(port: int, rate_limits: bool, non_marketplace: bool, chatter: float) -> None:
    fake = FakeSlack(port=port, rate_limits=rate_limits, non_marketplace=non_marketplace)
    await fake.start()
    ws = fake.workspace
    me, alice = ws.add_user("me", "Me Myself"), ws.add_user("alice", "Alice Liddell")
    general = ws.create_channel("general", [me.id, alice.id])
    ws.create_channel("secret", [me.id, alice.id], "private")
    ws.open_im(me.id, alice.id)
    user, session, app = ws.issue_token(me.id), ws.issue_token(me.id, "session"), ws.issue_token(me.id, "app")
    print(f"fake Slack on {fake.url} (Web API base_url {fake.base_url})")
    print(f"  user token (xoxp):    {user.value}")
    print(f"  app token (xapp):     {app.value}")
    print(f"  session token (xoxc): {session.value}  d cookie: {session.cookie}")
    print(f'  link settings: {{"api_url": "{fake.base_url}"}}')
    try:
        for n in itertools.count(1):
            await asyncio.sleep(chatter if chatter > 0 else 3600)
            if chatter > 0:
                ws.post(general.id, alice.id, f"hello number {n} from *alice*")
    finally:
        await fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-rate-limits", action="store_true", help="do not enforce Slack's tiers")
    parser.add_argument("--non-marketplace", action="store_true", help="1 history call a minute, 15 messages")
    parser.add_argument("--chatter", type=float, default=0.0, help="alice posts every N seconds")
    a = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(a.port, not a.no_rate_limits, a.non_marketplace, a.chatter))
