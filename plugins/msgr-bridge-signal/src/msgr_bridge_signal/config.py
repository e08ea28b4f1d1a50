"""Signal settings: ``[networks.signal]`` (the operator's) merged with what linking stored per account.

base_url               signal-cli-rest-api's address, e.g. "http://signal-api:8080" (required)
device_name            the name the linked device gets in the phone's list (default "msgr-bridge")
receive                "auto" (default: the websocket in json-rpc mode, polling otherwise),
                       "websocket" or "poll"
poll_timeout_s         seconds one GET /v1/receive waits for messages in normal mode (default 5)
liveness_interval_s    seconds between checks that the number is still linked while nothing arrives
                       (default 300): an unlinked device is noticed even when no request fails
rate_limit_retry_s     how long a send waits after a plain 429, which carries no Retry-After (60)
max_attachment_bytes   largest file sent or received (default 100 MiB, Signal's own limit)
request_timeout_s      seconds one REST call may take (default 60)
link_existing_accounts true lets linking claim a number that is already linked or registered on the
                       REST API by naming it, without scanning a new code (default false: only for a
                       REST API that serves one person)
number                 the account's number, stored at link time
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from msgr_bridge.errors import ConfigError

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
RECEIVE_MODES = ("auto", "websocket", "poll")


def _number(settings: Mapping[str, Any], key: str, default: float, minimum: float) -> float:
    value = settings.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"Signal setting {key!r} must be a number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"Signal setting {key!r} must be at least {minimum}, not {number}")
    return number


def _flag(settings: Mapping[str, Any], key: str) -> bool:
    value = settings.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ConfigError(f"Signal setting {key!r} must be true or false, not {value!r}")


@dataclass(frozen=True, slots=True)
class SignalSettings:
    base_url: str
    number: str = ""
    device_name: str = "msgr-bridge"
    receive: str = "auto"
    poll_timeout_s: float = 5.0
    liveness_interval_s: float = 300.0
    rate_limit_retry_s: float = 60.0
    max_attachment_bytes: int = 100 * 1024 * 1024
    request_timeout_s: float = 60.0
    link_existing_accounts: bool = False

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> SignalSettings:
        base_url = str(settings.get("base_url") or "").strip().rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"Signal setting 'base_url' must be signal-cli-rest-api's http(s) address, not {base_url!r}",
                hint='set it in [networks.signal], e.g. base_url = "http://signal-api:8080"',
            )
        number = str(settings.get("number") or "").strip()
        if number and not E164.match(number):
            raise ConfigError(
                f"Signal setting 'number' must be a phone number like +4915112345678, not {number!r}"
            )
        receive = str(settings.get("receive", "auto"))
        if receive not in RECEIVE_MODES:
            raise ConfigError(f"Signal setting 'receive' must be one of {', '.join(RECEIVE_MODES)}")
        return cls(
            base_url=base_url,
            number=number,
            device_name=str(settings.get("device_name") or "msgr-bridge")[:50],
            receive=receive,
            poll_timeout_s=_number(settings, "poll_timeout_s", 5.0, 1.0),
            liveness_interval_s=_number(settings, "liveness_interval_s", 300.0, 0.05),
            rate_limit_retry_s=_number(settings, "rate_limit_retry_s", 60.0, 0.0),
            max_attachment_bytes=int(_number(settings, "max_attachment_bytes", 100 * 1024 * 1024, 1)),
            request_timeout_s=_number(settings, "request_timeout_s", 60.0, 0.1),
            link_existing_accounts=_flag(settings, "link_existing_accounts"),
        )
