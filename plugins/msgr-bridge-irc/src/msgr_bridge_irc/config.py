"""IRC settings (``[networks.irc]`` and each account's own) and capabilities: light (pydantic only), so the
plugin's registration imports this and not the connector or bottom.

Secrets (``ctx.secrets``): ``server_password`` (sent as ``PASS``), ``password`` (the account password:
SASL PLAIN when the server offers SASL, NickServ ``IDENTIFY`` otherwise).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from msgr_bridge.schema import Capabilities

SECRET_SERVER_PASSWORD = "server_password"
SECRET_PASSWORD = "password"

DEFAULT_FLOOD_RATE = 2.0
DEFAULT_FLOOD_BURST = 3

CAPABILITIES = Capabilities(
    send=True,
    history_catchup=False,
    rate_limit_per_s=DEFAULT_FLOOD_RATE,
    rate_limit_burst=DEFAULT_FLOOD_BURST,
    echoes_own_sends=False,  # no echo-message on common servers (ngIRCd), and no transaction ids
    dedupes_txn_id=False,
)
"""IRC has no edits, deletes, reactions, receipts or typing (IRCv3 ``+typing`` needs message-tags, which
ngIRCd lacks); no attachments; no history. Long text is split, so there is no length limit. The rate limits
match the client's default flood bucket (per connection, not per conversation)."""

_BAD_NICK_CHARS = " ,*?!@#:/"


class IrcSettings(BaseModel):
    """``[networks.irc]`` and each IRC account's settings."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        min_length=1,
        pattern=r"^[^\s/]+$",
        description="server host name or address (e.g. irc.libera.chat); the prefix of every conversation id",
    )
    nick: str = Field(
        min_length=1, max_length=64, description="nick to register ('_' is appended while taken)"
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="TCP port (default 6697 with TLS, 6667 without)"
    )
    tls: bool = Field(True, description="connect with TLS")
    tls_verify: bool = Field(True, description="false to accept a self-signed certificate")
    realname: str = Field("", description="the real name field (default: the nick)")
    channels: list[str] = Field(default_factory=list, description="channels to join (comma-separated)")
    flood_rate: float = Field(
        DEFAULT_FLOOD_RATE, gt=0, le=1000, description="lines sent per second at most (most servers: 2)"
    )
    flood_burst: int = Field(DEFAULT_FLOOD_BURST, ge=1, le=1000, description="lines that may go at once")
    max_send_wait: float = Field(
        30.0, ge=0, description="seconds one send may pace its lines; the retry sends the rest (keep < 60)"
    )
    read_queue: int = Field(1024, ge=16, description="lines read ahead of the sink before reading pauses")
    nickserv: Literal["auto", "off"] = Field(
        "auto", description="auto: IDENTIFY to NickServ when a password is set and SASL is not offered"
    )
    timeout: float = Field(15.0, ge=0.1, description="seconds for registration, authentication and joins")
    ping_interval: float = Field(
        60.0, ge=0.1, description="seconds of silence before we PING; a second silence is a lost link"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return value.strip()

    @field_validator("nick")
    @classmethod
    def _nick(cls, value: str) -> str:
        nick = value.strip()
        if not nick or any(ch in nick for ch in _BAD_NICK_CHARS) or nick[0].isdigit() or nick[0] == "-":
            raise ValueError(f"{nick!r} is not a valid IRC nick (a nick like 'alice_bridge')")
        return nick

    @field_validator("nickserv", mode="before")
    @classmethod
    def _nickserv(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        out = []
        for raw in value:
            name = raw.strip()
            if not name:
                continue
            if name[0] not in "#&+!" or any(ch in name for ch in " ,\x07"):
                raise ValueError(
                    f"{name!r} is not an IRC channel name (they start with # (or &, +, !) and contain no "
                    "spaces or commas)"
                )
            out.append(name)
        return out

    @model_validator(mode="after")
    def _defaults_from_others(self) -> IrcSettings:
        if self.port is None:
            self.port = 6697 if self.tls else 6667
        if not self.realname:
            self.realname = self.nick
        return self


CONNECTION_FIELDS = ("host", "port", "tls", "tls_verify", "nick", "realname", "channels")
"""What a link stores for the account; other settings come from ``[networks.irc]`` unless answered."""


def account_capabilities(settings: IrcSettings) -> Capabilities:
    """``CAPABILITIES`` at the account's pace: the core's outbound limiter then holds the account to its
    ``flood_rate`` and ``flood_burst`` (raised or lowered in ``[networks.irc]`` or the account's settings),
    not to the declared default."""
    if (settings.flood_rate, settings.flood_burst) == (DEFAULT_FLOOD_RATE, DEFAULT_FLOOD_BURST):
        return CAPABILITIES
    return CAPABILITIES.model_copy(
        update={"rate_limit_per_s": settings.flood_rate, "rate_limit_burst": settings.flood_burst}
    )
