"""Link-flow helpers: a settings-driven credentials form, a test connection that is closed before the real
one starts, and reasons a person can act on.

``SettingsLinkFlow`` is the whole link flow of most networks: its form is the connector's settings model
(typed fields, defaults from ``[networks.<name>]``, help from the field descriptions) plus identity and
secret fields; ``submit`` validates the answers and calls ``verify``, which logs in once and returns the
``LinkResult``. A connection opened to check the answers is registered with ``self.probe(...)``; the flow
closes it before ``verify`` returns, and ``close()`` (called by the core when the flow ends, before the
account starts) closes anything left. A wrong answer raises, and the person answers the same step again.

``describe_error`` turns any exception into a non-empty reason (an ``ssl.SSLError()`` or a
``TimeoutError()`` has an empty ``str()``: the reason then names what happened and its cause).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from ..connectors.protocol import FormField, LinkResult, LinkStep, LinkStepKind
from ..errors import describe_error
from .settings import form_fields, operator_only_keys, refuse_operator_keys, validate_settings

__all__ = ["SettingsLinkFlow", "describe_error"]

Closer = Callable[[], Awaitable[Any]]


class SettingsLinkFlow:
    """A one-form link flow built from a settings model. Subclass it and implement ``verify``."""

    settings_model: ClassVar[type[BaseModel]]
    network: ClassVar[str] = ""
    """The network's name, for messages (``network=...`` on the subclass)."""
    prompt: ClassVar[str] = "Link an account"
    identity_fields: ClassVar[tuple[FormField, ...]] = ()
    """Answers that are neither settings nor secrets (a user id); shown first."""
    secret_fields: ClassVar[tuple[FormField, ...]] = ()
    """Answers stored as the account's secrets (``secret=True`` fields)."""
    typed_answers: ClassVar[bool] = True
    """Answers reach ``submit`` as given (numbers and booleans as such), not as strings."""

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self._probes: list[Closer] = []

    async def start(self) -> LinkStep:
        fields = (
            *self.identity_fields,
            *form_fields(self.settings_model, defaults=self.defaults),
            *self.secret_fields,
        )
        return LinkStep(kind=LinkStepKind.CREDENTIALS_FORM, prompt=self.prompt, fields=fields)

    async def submit(self, answers: Mapping[str, Any]) -> LinkStep | LinkResult:
        given = {k: v for k, v in answers.items() if v is not None}
        refuse_operator_keys(self.settings_model, given, network=self.network or type(self).__name__)
        # an empty answer for an operator-only setting chose nothing: the operator's value stands
        operators = operator_only_keys(self.settings_model)
        given = {k: v for k, v in given.items() if k not in operators}
        model_keys = set(self.settings_model.model_fields)
        settings = validate_settings(
            self.settings_model,
            {k: v for k, v in {**self.defaults, **given}.items() if k in model_keys},
            network=self.network or type(self).__name__,
            where="the link answer",
        )
        secrets = {}
        for f in self.secret_fields:
            value = given.get(f.name, self.defaults.get(f.name))
            if value not in (None, ""):
                secrets[f.name] = str(value)
        identity = {f.name: given.get(f.name, self.defaults.get(f.name)) for f in self.identity_fields}
        try:
            return await self.verify(settings, secrets, identity)
        finally:
            await self.close()

    async def verify(
        self, settings: Any, secrets: Mapping[str, str], identity: Mapping[str, Any]
    ) -> LinkResult:
        """Check the answers (log in once) and return the result; raise with a reason when they are wrong.
        Register a test connection with ``self.probe(close)``: it is closed before the flow ends."""
        raise NotImplementedError

    def probe(self, close: Closer) -> None:
        self._probes.append(close)

    async def close(self) -> None:
        """Close every test connection (each awaited, so the server has let go before the real one)."""
        probes, self._probes = self._probes, []
        for close in reversed(probes):
            await close()

    async def cancel(self) -> None:
        await self.close()
