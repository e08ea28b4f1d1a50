"""A wire-level fake of Slack: the Web API, Socket Mode and RTM, for ``slack_sdk`` over real sockets.

    async with FakeSlack() as fake:
        alice = fake.workspace.add_user("alice")
        token = fake.workspace.issue_token(alice.id).value           # xoxp-...
        web = AsyncWebClient(token=token, base_url=fake.base_url)

The fake keeps a workspace (``model.Workspace``: users, public and private channels, IMs and MPIMs,
messages with ``ts``, threads, reactions, files), answers in Slack's formats, pushes what other users do as
events (``workspace.post(...)`` as another user), and records every request (``requests``). It checks each
method and argument against Slack's published description (``spec.py``, vendored with its licences under
``fakes/data/slack/``) and records what the description does not allow in ``violations``.

Faults: ``fail(method, error, ...)`` (``ratelimited`` answers HTTP 429 with ``Retry-After``),
``revoke(token, error)``, ``enable_rate_limits()`` (Slack's tiers; ``non_marketplace=True`` for the 1
request/minute history limit), ``send_disconnect()``, ``deafen()``, ``ack_timeout`` (redelivery of
unacknowledged envelopes), ``stop()``/``start()`` (a restart on the same port).

Run it on its own with ``python -m msgr_bridge.testing.fakes.slack``.
"""

from __future__ import annotations

from .entities import SlackError
from .model import Workspace
from .server import FakeSlack, Recorded, running

__all__ = ["FakeSlack", "Recorded", "SlackError", "Workspace", "running"]
