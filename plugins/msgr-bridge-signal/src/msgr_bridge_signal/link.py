"""Linking: the bridge becomes a linked device of the person's Signal account, by QR code.

``start`` asks signal-cli-rest-api for a device link (``/v1/qrcodelink/raw``: the ``sgnl://linkdevice?...``
URI the API's QR code shows; the bridge's API renders it as a picture) and notes which numbers were linked
already. The person scans it in Signal (Settings, Linked devices, Link new device), then submits their
number. ``submit`` polls ``/v1/accounts``: once that number has appeared since the code was shown the link
is done; until then the same QR step comes back (scan, then submit again). A number the REST API already
had is accepted only when the operator set ``link_existing_accounts`` (a REST API serving one person):
otherwise anyone could claim any number the REST API holds by naming it. Nothing secret is stored: the
device's keys stay in signal-cli's own data directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgr_bridge.connectors.protocol import FormField, LinkResult, LinkStep, LinkStepKind
from msgr_bridge.errors import AuthenticationFailed

from .client import SignalApi
from .config import E164, SignalSettings

PROMPT = (
    "On your phone, open Signal: Settings, Linked devices, Link new device, and scan this code. "
    "Then enter your Signal phone number and submit."
)
NOT_YET = "Not linked yet: scan the code with Signal on your phone, then submit again."


class SignalLinkFlow:
    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.settings = SignalSettings.from_mapping(defaults)
        self.before: set[str] | None = None
        self.step: LinkStep | None = None

    async def start(self) -> LinkStep:
        async with SignalApi(self.settings) as api:
            self.before = set(await api.accounts())
            uri = await api.link_uri(self.settings.device_name)
        self.step = LinkStep(
            kind=LinkStepKind.QR_CODE,
            prompt=PROMPT,
            qr_data=uri,
            fields=(FormField(name="number", label="Your Signal phone number (+country code)"),),
        )
        return self.step

    async def submit(self, answers: Mapping[str, str]) -> LinkStep | LinkResult:
        number = (answers.get("number") or "").strip().replace(" ", "")
        if not E164.match(number):
            raise AuthenticationFailed(
                f"{number!r} is not a phone number",
                hint="enter it with its country code, like +4915112345678",
            )
        async with SignalApi(self.settings) as api:
            linked = set(await api.accounts())
        fresh = self.before is not None and number in linked - self.before
        if fresh or (self.settings.link_existing_accounts and number in linked):
            # the account keeps the REST API that holds its keys and its number; every other key is read from
            # [networks.signal] at each start, so the operator's tuning applies to accounts linked earlier
            settings = {"base_url": self.settings.base_url, "number": number}
            return LinkResult(remote_user_id=number, display_name=number, settings=settings)
        if self.step is not None:
            return self.step.model_copy(update={"prompt": NOT_YET})
        raise AuthenticationFailed(
            f"{number} is not linked to signal-cli-rest-api at {self.settings.base_url}",
            hint="start linking again and scan the QR code with Signal on your phone",
        )

    async def cancel(self) -> None:
        return None
