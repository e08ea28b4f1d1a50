"""Change notifications: Graph posts to the bridge when a chat or channel changes, instead of being polled.

On when the bridge has a hook URL for the account (``ctx.hooks``, built from ``[api] public_base_url``) and
the setting ``receive`` allows it: ``"auto"`` (the default) when that URL is https (Graph posts only to
https), ``"webhook"`` always (a proxy in front of the bridge, or the fake), ``"poll"`` never.

- One subscription per chat (``/chats/{id}/messages``) and per followed channel
  (``/teams/{id}/channels/{id}/messages``), delegated (Chat.Read, ChannelMessage.Read.All), created with
  ``clientState`` (a random secret kept in ``ctx.secrets``) and the same URL for lifecycle notifications;
  Graph first checks the URL with its ``validationToken`` handshake (echoed as text/plain). Chat-message
  subscriptions live at most an hour: they are made for ``subscription_s`` seconds and renewed (PATCH)
  once a quarter of that is left. Ids and expiries are kept in ``ctx.state['subscriptions']``, so the
  schedule survives a restart; a renewal Graph refuses with 404 creates the subscription again.
- A notification without our ``clientState`` is ignored (refused with 403 when nothing in the call is
  ours). A valid one names its chat or channel: that conversation is fetched from its cursor by the normal
  polling code (``receive.py``), so a notification is only a wake-up and nothing depends on its contents
  (no resource data is asked for, so nothing needs decrypting).
- Lifecycle notifications: ``reauthorizationRequired`` renews the subscription now (a renewal also
  reauthorizes); ``subscriptionRemoved`` and ``missed`` fetch every conversation from its cursor (catch-up)
  and create the subscription again.
- A conversation whose subscription Graph refused is polled as before and tried again after
  ``RETRY_S``. Polling stays the fallback: every ``webhook_poll_s`` the chats are listed again (a new chat
  gets its subscription) and the uncovered conversations are polled.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from msgr_bridge.errors import PermanentError
from msgr_bridge.sdk.hooks import HookRefused, HookRequest, HookResponse

SECRET_CLIENT_STATE = "client_state"
STATE_SUBSCRIPTIONS = "subscriptions"
HOOK = "graph"
MAX_SUBSCRIPTIONS = 200
"""Conversations with a subscription; the others are polled."""
RETRY_S = 600.0
MAX_DIRTY = 5_000
MAX_TOKEN = 1_024
"""Graph's validation tokens are about a hundred characters: the echo is bounded (and never sniffed)."""
_CHAT = re.compile(r"^/?chats\('([^']+)'\)")
_CHANNEL = re.compile(r"^/?teams\('([^']+)'\)/channels\('([^']+)'\)")


def resource_of(conversation_id: str) -> str:
    if "/" in conversation_id:
        team, _, channel = conversation_id.partition("/")
        return f"/teams/{team}/channels/{channel}/messages"
    return f"/chats/{conversation_id}/messages"


def conversation_of(resource: str) -> str | None:
    """The chat or channel a notification's ``resource`` names (``chats('19:…')/messages('…')``)."""
    if m := _CHAT.match(resource):
        return m.group(1)
    if m := _CHANNEL.match(resource):
        return f"{m.group(1)}/{m.group(2)}"
    return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Notifications:
    def __init__(self, connector: Any) -> None:
        self.c = connector
        self.url: str | None = None
        self.client_state = ""
        self.subs: dict[str, dict[str, Any]] = {}
        """conversation id -> {"id": subscription id, "expires": epoch seconds}"""
        self.refused: dict[str, float] = {}
        """conversation id -> when to try subscribing again"""
        self.dirty: set[str] = set()
        self.everything = False
        self.due: set[str] = set()
        """Conversations whose subscription must be renewed now (reauthorizationRequired) or made again."""
        self.received = 0

    @property
    def active(self) -> bool:
        return self.url is not None

    async def open(self) -> None:
        mode = self.c.settings.receive
        url = self.c.ctx.hooks.register(HOOK, self.on_call) if mode != "poll" else None
        if url is not None and mode == "auto" and not url.startswith("https://"):
            self.c.log.info("teams.webhook_off", reason="Graph posts only to https URLs", url=url)
            url = None
        if url is None:
            self.c.ctx.hooks.unregister(HOOK)
            return
        state = await self.c.ctx.secrets.get_optional(SECRET_CLIENT_STATE)
        stored = await self.c.ctx.state.get(STATE_SUBSCRIPTIONS, {})
        if not state:  # stored subscriptions carry a clientState we no longer know: made again
            state, stored = secrets.token_urlsafe(32), {}
            await self.c.ctx.secrets.put(SECRET_CLIENT_STATE, state)
        self.client_state, self.url = state, url
        for conv, sub in stored.items() if isinstance(stored, dict) else ():
            if isinstance(sub, dict) and isinstance(sub.get("id"), str):
                self.subs[conv] = {"id": sub["id"], "expires": float(sub.get("expires", 0))}
        self.everything = True  # the first round catches up on every conversation

    def close(self) -> None:
        self.c.ctx.hooks.unregister(HOOK)
        self.url = None

    def covered(self, conv: str) -> bool:
        sub = self.subs.get(conv)
        return self.active and sub is not None and sub["expires"] > time.time()

    def take(self) -> tuple[set[str] | None, bool]:
        """What the next round fetches: None for everything, else the notified conversations; and whether
        it is a catch-up of everything."""
        if self.everything:
            self.everything, self.dirty = False, set()
            return None, True
        dirty, self.dirty = self.dirty, set()
        return dirty, False

    # --- subscriptions ------------------------------------------------------------------------------

    async def maintain(self, conversations: list[str]) -> None:
        """Create, renew and drop subscriptions so that each conversation has one that is not about to
        expire (at most ``MAX_SUBSCRIPTIONS``)."""
        if not self.active:
            return
        now, lifetime = time.time(), self.c.settings.subscription_s
        wanted = conversations[:MAX_SUBSCRIPTIONS]
        changed = False
        for conv in wanted:
            if self.c.stopping():
                break
            sub = self.subs.get(conv)
            fresh = sub is not None and sub["expires"] - now > lifetime / 4 and conv not in self.due
            if fresh or self.refused.get(conv, 0) > now:
                continue
            self.due.discard(conv)
            expires = time.time() + lifetime
            if sub is not None and await self._renew(sub["id"], expires):
                sub["expires"] = expires
            else:
                self.subs.pop(conv, None)
                made = await self._create(conv, expires)
                if made is None:
                    self.refused[conv] = now + RETRY_S
                else:
                    self.subs[conv] = {"id": made, "expires": expires}
                    self.refused.pop(conv, None)
            changed = True
        for conv in [c for c in self.subs if c not in wanted]:
            sub = self.subs.pop(conv)
            changed = True
            with contextlib.suppress(PermanentError):
                await self.c.graph.request("DELETE", f"/subscriptions/{sub['id']}")
        if changed:
            await self.c.ctx.state.set(STATE_SUBSCRIPTIONS, dict(self.subs))

    async def _renew(self, sub_id: str, expires: float) -> bool:
        try:
            await self.c.graph.request(
                "PATCH", f"/subscriptions/{sub_id}", json={"expirationDateTime": _iso(expires)}
            )
        except PermanentError as exc:
            self.c.log.info("teams.subscription_gone", subscription=sub_id, reason=str(exc))
            return False
        return True

    async def _create(self, conv: str, expires: float) -> str | None:
        body = {
            "changeType": "created,updated,deleted",
            "notificationUrl": self.url,
            "lifecycleNotificationUrl": self.url,
            "resource": resource_of(conv),
            "expirationDateTime": _iso(expires),
            "clientState": self.client_state,
        }
        try:
            made = await self.c.graph.request("POST", "/subscriptions", json=body)
        except PermanentError as exc:
            self.c.log.warning("teams.subscription_refused", conversation=conv, reason=str(exc))
            return None
        sub_id = made.get("id") if isinstance(made, dict) else None
        return sub_id if isinstance(sub_id, str) else None

    # --- the webhook --------------------------------------------------------------------------------

    async def on_call(self, request: HookRequest) -> HookResponse:
        token = request.query.get("validationToken")
        if token is not None:  # Graph's handshake, for notificationUrl and lifecycleNotificationUrl
            if len(token) > MAX_TOKEN:
                raise HookRefused(400, "validationToken too long")
            return HookResponse(
                200, token, content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"}
            )
        body = request.json()
        items = body.get("value") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise HookRefused(400, "expected a changeNotificationCollection")
        ours = [
            i
            for i in items
            if isinstance(i, dict) and request.secret_matches(self.client_state, i.get("clientState"))
        ]
        if not ours:
            raise HookRefused(403, "no notification carries this subscription's clientState")
        by_id = {s["id"]: conv for conv, s in self.subs.items()}
        for item in ours:
            self.received += 1
            conv = by_id.get(str(item.get("subscriptionId"))) or conversation_of(
                str(item.get("resource", ""))
            )
            event = item.get("lifecycleEvent")
            if event == "reauthorizationRequired" and conv is not None:
                self.due.add(conv)
            elif event in ("subscriptionRemoved", "missed"):
                self.everything = True
                if conv is not None:
                    self.due.add(conv)
                    if event == "subscriptionRemoved":
                        self.subs.pop(conv, None)
            elif event is None and conv is not None and len(self.dirty) < MAX_DIRTY:
                self.dirty.add(conv)
            elif event is None:
                self.everything = True  # too many at once: catch up on everything
            self.c.log.debug("teams.notified", conversation=conv, change=event or item.get("changeType"))
        self.c.poke()
        return HookResponse(202)
