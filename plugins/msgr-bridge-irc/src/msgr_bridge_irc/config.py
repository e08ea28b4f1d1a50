"""Per-account IRC settings (non-secret) and the secret keys the connector reads.

Settings (``ctx.settings``, chosen at link time)::

    host          server host name or address (required); also the prefix of every conversation id
    port          TCP port (default 6697 with TLS, 6667 without)
    tls           true to connect with TLS (default true)
    tls_verify    false to accept a self-signed certificate (default true)
    nick          nick to register (required); "_" is appended while the nick is taken
    realname      the real name field (default: the nick)
    channels      channels to join: a list, or one comma-separated string
    flood_rate    lines per second the client sends at most, sustained (default 2.0)
    flood_burst   lines the client may send at once (default 3)
    max_send_wait seconds one send may pace its lines (default 30, below the delivery worker's 60 s send
                  timeout); a longer message sends what fits, raises RateLimited, and the retry resumes
                  after the lines already sent (``msgr_bridge.sdk.pacing``)
    read_queue    lines read ahead of the sink at most before the socket is no longer read (default 1024)
    nickserv      "auto" (default): identify to NickServ when a password is set and SASL is not offered;
                  "off": never
    timeout       seconds for registration, authentication and joins (default 15)
    ping_interval seconds of silence before we PING the server; a second silence is a lost link (60)

Secrets (``ctx.secrets``): ``server_password`` (sent as ``PASS``), ``password`` (the account password:
SASL PLAIN when the server offers SASL, NickServ ``IDENTIFY`` otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from msgr_bridge.errors import ConfigError

SECRET_SERVER_PASSWORD = "server_password"
SECRET_PASSWORD = "password"


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise ConfigError(f"IRC setting {name!r} must be true or false, not {value!r}")


def _number(value: Any, name: str, *, minimum: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"IRC setting {name!r} must be a number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"IRC setting {name!r} must be at least {minimum}, not {number}")
    return number


def _channels(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(c, str) for c in items):
        raise ConfigError(
            "IRC setting 'channels' must be a list of channel names or a comma-separated string"
        )
    out = []
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        if name[0] not in "#&+!" or any(ch in name for ch in " ,\x07"):
            raise ConfigError(
                f"{name!r} is not an IRC channel name",
                hint="channel names start with # (or &, +, !) and contain no spaces or commas",
            )
        out.append(name)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class IrcSettings:
    host: str
    nick: str
    port: int = 6697
    tls: bool = True
    tls_verify: bool = True
    realname: str = ""
    channels: tuple[str, ...] = ()
    flood_rate: float = 2.0
    flood_burst: int = 3
    max_send_wait: float = 30.0
    read_queue: int = 1024
    nickserv: str = "auto"
    timeout: float = 15.0
    ping_interval: float = 60.0

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> IrcSettings:
        """Validate settings; raises ``ConfigError`` naming the bad key."""
        host = str(settings.get("host") or "").strip()
        nick = str(settings.get("nick") or "").strip()
        if not host or any(ch in host for ch in " /"):
            raise ConfigError(
                "IRC setting 'host' is missing or invalid", hint="e.g. host = 'irc.libera.chat'"
            )
        if not nick or any(ch in nick for ch in " ,*?!@#:/") or nick[0].isdigit() or nick[0] == "-":
            raise ConfigError(f"IRC nick {nick!r} is missing or invalid", hint="a nick like 'alice_bridge'")
        tls = _bool(settings.get("tls", True), "tls")
        port = int(_number(settings.get("port", 6697 if tls else 6667), "port", minimum=1))
        if port > 65535:
            raise ConfigError(f"IRC setting 'port' must be at most 65535, not {port}")
        nickserv = str(settings.get("nickserv", "auto")).lower()
        if nickserv not in ("auto", "off"):
            raise ConfigError("IRC setting 'nickserv' must be 'auto' or 'off'")
        return cls(
            host=host,
            nick=nick,
            port=port,
            tls=tls,
            tls_verify=_bool(settings.get("tls_verify", True), "tls_verify"),
            realname=str(settings.get("realname") or nick),
            channels=_channels(settings.get("channels")),
            flood_rate=_number(settings.get("flood_rate", 2.0), "flood_rate", minimum=0.01),
            flood_burst=int(_number(settings.get("flood_burst", 3), "flood_burst", minimum=1)),
            max_send_wait=_number(settings.get("max_send_wait", 30.0), "max_send_wait", minimum=0),
            read_queue=int(_number(settings.get("read_queue", 1024), "read_queue", minimum=16)),
            nickserv=nickserv,
            timeout=_number(settings.get("timeout", 15.0), "timeout", minimum=0.1),
            ping_interval=_number(settings.get("ping_interval", 60.0), "ping_interval", minimum=0.1),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "tls_verify": self.tls_verify,
            "nick": self.nick,
            "realname": self.realname,
            "channels": list(self.channels),
        }
