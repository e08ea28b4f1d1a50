"""An in-process chat network: users, direct and group conversations, edits, deletes, reactions, receipts.

It plays the part of a remote platform. Tests and benchmarks drive it directly (``post`` as a remote user,
``drop`` a session, ``deafen`` one, ``inject_fault`` for rate limits and failures) and connectors talk to it
the way a real connector talks to its platform's server: they open a ``Session`` and read wire payloads.
Every payload gets a network-wide sequence number, which is also the history cursor.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio

from msgr_bridge.errors import AuthenticationFailed, PermanentError, TransientError

Payload = dict[str, Any]


@dataclass
class Conversation:
    id: str
    name: str
    type: str  # "direct" or "group"
    members: set[str] = field(default_factory=set)


class Session:
    """One connector's live connection to the network: an unbounded queue of payloads for one user."""

    def __init__(self, network: LoopbackNetwork, user_id: str) -> None:
        self.network = network
        self.user_id = user_id
        self.queue: deque[Payload] = deque()
        self._ready = anyio.Event()
        self.closed: BaseException | None = None
        self.deaf = False

    def deliver(self, payload: Payload) -> None:
        if not self.deaf and self.closed is None:
            self.queue.append(payload)
            self._ready.set()

    def close(self, error: BaseException) -> None:
        self.closed = error
        self._ready.set()

    async def receive(self) -> Payload:
        """The next payload; raises the error the session was closed with."""
        while True:
            if self.queue:
                return self.queue.popleft()
            if self.closed is not None:
                raise self.closed
            self._ready = anyio.Event()
            await self._ready.wait()


class LoopbackNetwork:
    """A named, process-wide network instance (``LoopbackNetwork.get(name)``)."""

    _instances: ClassVar[dict[str, LoopbackNetwork]] = {}

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.users: dict[str, str] = {}
        self.passwords: dict[str, str] = {}
        self.conversations: dict[str, Conversation] = {}
        self.log: list[Payload] = []
        self.messages: dict[str, Payload] = {}
        """Current state of each message (sender, text, version); payloads already sent never change."""
        self.sessions: dict[str, list[Session]] = {}
        self.faults: dict[str, deque[BaseException]] = {}
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)

    @classmethod
    def get(cls, name: str = "default") -> LoopbackNetwork:
        if name not in cls._instances:
            cls._instances[name] = cls(name)
        return cls._instances[name]

    @classmethod
    def reset(cls, name: str | None = None) -> None:
        if name is None:
            cls._instances.clear()
        else:
            cls._instances.pop(name, None)

    # --- directory ----------------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str | None = None, password: str | None = None) -> None:
        self.users[user_id] = name or user_id
        if password is not None:
            self.passwords[user_id] = password

    def create_group(self, conversation_id: str, name: str, members: Iterable[str]) -> Conversation:
        conv = Conversation(conversation_id, name, "group", set(members))
        self.conversations[conversation_id] = conv
        return conv

    def direct(self, a: str, b: str) -> Conversation:
        conversation_id = "dm:" + ":".join(sorted((a, b)))
        if conversation_id not in self.conversations:
            self.conversations[conversation_id] = Conversation(conversation_id, "", "direct", {a, b})
        return self.conversations[conversation_id]

    def authenticate(self, user_id: str, password: str) -> None:
        if user_id not in self.users or self.passwords.get(user_id) != password:
            raise AuthenticationFailed(f"loopback network {self.name!r} refused the login of {user_id!r}")

    # --- sessions and fault injection ---------------------------------------------------------------

    def open_session(self, user_id: str) -> Session:
        self.check_fault("connect")
        session = Session(self, user_id)
        self.sessions.setdefault(user_id, []).append(session)
        return session

    def close_session(self, session: Session, error: BaseException | None = None) -> None:
        session.close(error or EOFError("session closed"))
        sessions = self.sessions.get(session.user_id, [])
        if session in sessions:
            sessions.remove(session)

    def drop(self, user_id: str) -> None:
        """Simulate a lost connection: every session of ``user_id`` ends with a TransientError."""
        for session in list(self.sessions.get(user_id, [])):
            self.close_session(session, TransientError(f"loopback connection of {user_id} dropped"))

    def deafen(self, user_id: str, deaf: bool = True) -> None:
        """Simulate a connection that looks healthy but receives nothing."""
        for session in self.sessions.get(user_id, []):
            session.deaf = deaf

    def inject_fault(self, operation: str, error: BaseException, times: int = 1) -> None:
        """Make the next ``times`` calls of ``operation`` (connect, send, edit, delete, react, read) fail."""
        self.faults.setdefault(operation, deque()).extend([error] * times)

    def check_fault(self, operation: str) -> None:
        pending = self.faults.get(operation)
        if pending:
            raise pending.popleft()

    # --- activity (remote users and connectors alike) -----------------------------------------------

    def _member(self, conversation_id: str, user_id: str) -> Conversation:
        conv = self.conversations.get(conversation_id)
        if conv is None:
            raise PermanentError(f"loopback conversation {conversation_id!r} does not exist")
        if user_id not in conv.members:
            raise PermanentError(f"{user_id!r} is not a member of {conversation_id!r}")
        return conv

    def _emit(self, conv: Conversation, payload: Payload) -> Payload:
        payload["seq"] = next(self._seq)
        payload["conversation"] = conv.id
        payload.setdefault("ts", time.time())
        self.log.append(payload)
        for member in conv.members:
            for session in self.sessions.get(member, ()):
                session.deliver(payload)
        return payload

    def post(
        self,
        conversation_id: str,
        sender: str,
        text: str,
        *,
        txn_id: str | None = None,
        reply_to: str | None = None,
        message_id: str | None = None,
    ) -> Payload:
        conv = self._member(conversation_id, sender)
        mid = message_id or f"m{next(self._ids)}"
        payload: Payload = {
            "type": "message",
            "id": mid,
            "sender": sender,
            "sender_name": self.users.get(sender, sender),
            "text": text,
        }
        if txn_id:
            payload["txn_id"] = txn_id
        if reply_to:
            payload["reply_to"] = reply_to
        self.messages[mid] = {"sender": sender, "text": text, "version": 0}
        return self._emit(conv, payload)

    def edit(self, conversation_id: str, sender: str, target: str, text: str) -> Payload:
        conv = self._member(conversation_id, sender)
        original = self.messages.get(target)
        if original is None or original["sender"] != sender:
            raise PermanentError(f"{sender!r} cannot edit message {target!r}")
        original["version"] += 1
        original["text"] = text
        return self._emit(
            conv,
            {
                "type": "edit",
                "id": f"e{next(self._ids)}",
                "target": target,
                "sender": sender,
                "text": text,
                "version": original["version"],
            },
        )

    def delete(self, conversation_id: str, sender: str, target: str) -> Payload:
        conv = self._member(conversation_id, sender)
        if target not in self.messages:
            raise PermanentError(f"message {target!r} does not exist")
        self.messages.pop(target)
        return self._emit(conv, {"type": "delete", "target": target, "sender": sender})

    def react(
        self, conversation_id: str, sender: str, target: str, emoji: str, *, remove: bool = False
    ) -> Payload:
        conv = self._member(conversation_id, sender)
        return self._emit(
            conv,
            {
                "type": "reaction",
                "target": target,
                "sender": sender,
                "emoji": emoji,
                "action": "remove" if remove else "add",
            },
        )

    def read(self, conversation_id: str, reader: str, up_to: str) -> Payload:
        conv = self._member(conversation_id, reader)
        return self._emit(conv, {"type": "read", "target": up_to, "sender": reader})

    def typing(self, conversation_id: str, user: str, active: bool = True) -> Payload:
        conv = self._member(conversation_id, user)
        return self._emit(conv, {"type": "typing", "sender": user, "active": active})

    def join(self, conversation_id: str, user: str) -> Payload:
        conv = self.conversations[conversation_id]
        conv.members.add(user)
        return self._emit(conv, {"type": "membership", "sender": user, "action": "join"})

    def leave(self, conversation_id: str, user: str) -> Payload:
        conv = self.conversations[conversation_id]
        payload = self._emit(conv, {"type": "membership", "sender": user, "action": "leave"})
        conv.members.discard(user)
        return payload

    # --- history ------------------------------------------------------------------------------------

    def history(self, user_id: str, after_seq: int, limit: int = 10_000) -> list[Payload]:
        """Payloads after ``after_seq`` in conversations ``user_id`` belongs to (the catch-up API)."""
        visible = {c.id for c in self.conversations.values() if user_id in c.members}
        out: list[Payload] = []
        for p in self.log[max(0, after_seq) :]:  # seq n sits at index n-1
            if p["conversation"] in visible:
                out.append(p)
                if len(out) >= limit:
                    break
        return out

    def last_seq(self) -> int:
        return self.log[-1]["seq"] if self.log else 0
