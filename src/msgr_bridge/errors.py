"""One error hierarchy for the whole bridge.

Every error carries an operator-facing explanation: what went wrong, and what to do about it. The CLI maps
the top-level families to distinct exit codes (see ``exit_code``), and the API maps them to problem details.
"""

from __future__ import annotations

import ssl
from typing import ClassVar


class BridgeError(Exception):
    """Base of every error msgr-bridge raises on purpose.

    ``message`` says what happened; ``hint`` says what the operator should do. ``code`` is a stable,
    machine-readable identifier (used by the API's problem details and by log queries).
    """

    code: ClassVar[str] = "bridge_error"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def explain(self) -> str:
        """The full text for an operator: the message, then the hint when there is one."""
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    def __str__(self) -> str:
        return self.explain()


# --- configuration ----------------------------------------------------------------------------------------


class ConfigError(BridgeError):
    """The configuration file or environment is invalid."""

    code = "config_invalid"
    exit_code = 2


class SecretReferenceError(ConfigError):
    """A ``vault://``, ``env://`` or ``file://`` reference could not be resolved."""

    code = "secret_reference_invalid"


# --- database ---------------------------------------------------------------------------------------------


class DatabaseError(BridgeError):
    """The database is unreachable, or its schema does not match this code."""

    code = "database_error"
    exit_code = 3


class SchemaTooNewError(DatabaseError):
    """The database was migrated by a newer msgr-bridge than this one."""

    code = "schema_too_new"


class SchemaOutdatedError(DatabaseError):
    """The database needs ``msgr-bridge migrate`` before this code can use it."""

    code = "schema_outdated"


# --- plugins ----------------------------------------------------------------------------------------------


class PluginError(BridgeError):
    """A plugin failed to import or register."""

    code = "plugin_error"
    exit_code = 4


# --- credentials ------------------------------------------------------------------------------------------


class CredentialError(BridgeError):
    """The credential layer (Vault or the local keystore) failed."""

    code = "credential_error"
    exit_code = 5


class CredentialNotFound(CredentialError):
    code = "credential_not_found"


class CredentialAccessDenied(CredentialError):
    """A scoped handle asked for a secret outside its scope."""

    code = "credential_access_denied"


class VaultUnavailable(CredentialError):
    """Vault is sealed or unreachable; the caller may retry."""

    code = "vault_unavailable"


# --- connectors and delivery ------------------------------------------------------------------------------


class ConnectorError(BridgeError):
    """Base for errors raised by connectors; the supervisor and delivery stage act on the subclass."""

    code = "connector_error"


class NotSupported(ConnectorError):
    """The network (or this conversation) cannot do what was asked.

    Raised for every capability a connector declares false; ``capability`` names the flag.
    """

    code = "not_supported"

    def __init__(self, capability: str, *, network: str | None = None, hint: str | None = None) -> None:
        where = f" on {network}" if network else ""
        super().__init__(f"{capability} is not supported{where}", hint=hint)
        self.capability = capability
        self.network = network


class TransientError(ConnectorError):
    """A failure worth retrying (network blip, 5xx, server restart)."""

    code = "transient"


class RateLimited(TransientError):
    """The platform asked us to back off (HTTP 429 Retry-After, Telegram FLOOD_WAIT).

    The message waits; it is never dropped. ``retry_after`` is in seconds.
    """

    code = "rate_limited"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(message or f"rate limited by the platform; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """A failure that will not go away by retrying (message too long, conversation gone)."""

    code = "permanent"


class AttachmentRefused(PermanentError):
    """An attachment the bridge will not read: a local file or path, an address a remote fetch may not
    reach, a remote fetch the operator has not enabled, or a file past its size limit. A send carrying it
    fails with this reason (the API refuses it with 422 where it can tell at once)."""

    code = "attachment_refused"


class AuthenticationFailed(ConnectorError):
    """The account's credentials were refused or have expired; the account turns ``bad_credentials``."""

    code = "bad_credentials"


class MalformedPayload(ConnectorError):
    """A platform payload could not be converted to the canonical schema; it is quarantined."""

    code = "malformed_payload"


# --- pipelines --------------------------------------------------------------------------------------------


class DropMessage(Exception):
    """Raised by a pipeline stage to end one message cleanly. Counted, not logged as a failure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PolicyDenied(BridgeError):
    """The policy engine refused an outbound send; ``reason`` is shown to the sender."""

    code = "policy_denied"

    def __init__(self, reason: str, *, rule: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


def exit_code_for(error: BaseException) -> int:
    """The process exit code for an error that ends the CLI."""
    return error.exit_code if isinstance(error, BridgeError) else 1


# --- event bus --------------------------------------------------------------------------------------------


class BusError(BridgeError):
    """The event bus was used wrongly (an invalid topic or pattern): a bug in the caller."""

    code = "bus_error"


class BusClosed(BusError):
    """The bus is draining or closed (the bridge is shutting down); nothing more is accepted."""

    code = "bus_closed"


# --- API tokens (store/tokens.py) ---------------------------------------------------------------------------


class TokenRejected(BridgeError):
    """An API token was refused; the subclass says why (the API answers 401 for each)."""

    code = "token_rejected"


class TokenUnknown(TokenRejected):
    code = "token_unknown"


class TokenExpired(TokenRejected):
    code = "token_expired"


class TokenRevoked(TokenRejected):
    code = "token_revoked"


# --- outbound (outbound/service.py, outbound/impersonation.py) ----------------------------------------------


class OutboundRejected(BridgeError):
    """An outbound request was refused before it was queued (malformed, too long, an attachment the network
    does not take, an idempotency key reused for another request). The API answers 422."""

    code = "outbound_rejected"


class ImpersonationDenied(OutboundRejected):
    """The user may not send through that account (unknown account, another tenant's, another user's)."""

    code = "impersonation_denied"


# --- reasons ----------------------------------------------------------------------------------------------

_KNOWN: tuple[tuple[type[BaseException], str], ...] = (
    (ssl.SSLCertVerificationError, "the server's TLS certificate was not accepted"),
    (ssl.SSLError, "the TLS handshake failed (does the port speak TLS? check the port and tls settings)"),
    (TimeoutError, "no answer in time (check the host and port, and that the server is up)"),
    (ConnectionRefusedError, "the connection was refused (nothing listens on that host and port)"),
    (ConnectionResetError, "the server closed the connection"),
    (EOFError, "the server closed the connection"),
)


def _known(exc: BaseException) -> str | None:
    for kind, text in _KNOWN:
        if isinstance(exc, kind):
            return text
    return None


def describe_error(exc: BaseException, *, _depth: int = 0) -> str:
    """A reason a person can act on: the error's own text, else what its type means, with its cause when
    the text ends without one (``"cannot connect to irc:6697: "`` gets the TLS error that caused it)."""
    text = (exc.message if isinstance(exc, BridgeError) else str(exc)).strip()
    if text in ("()", "None"):  # what an OSError (an ssl.SSLError) without arguments says
        text = ""
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if text and not text.endswith(":"):
        return text
    own = text.rstrip(":").strip()
    if cause is not None and _depth < 5:
        detail = describe_error(cause, _depth=_depth + 1)
        return f"{own}: {detail}" if own else detail
    if own:
        return own
    known = _known(exc)
    name = type(exc).__name__
    return f"{known} ({name})" if known else f"{name} (the error gave no detail)"
