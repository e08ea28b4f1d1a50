"""Typed settings per connector: one pydantic model gives validation, the link form and the config check.

A connector (or its light description) declares ``settings_model``::

    class IrcSettings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        host: str = Field(description="server host name or address")
        port: int = Field(6697, ge=1, le=65535, description="TCP port")
        tls: bool = Field(True, description="connect with TLS")
        channels: list[str] = Field(default_factory=list, description="channels to join")

    class IrcConnector(BaseConnector):
        settings_model = IrcSettings

The core then validates an account's settings when it is linked and at every start (``[networks.irc]``
defaults merged with the account's own), ``msgr-bridge config check`` validates ``[networks.irc]``, and
``form_fields(IrcSettings)`` builds the link form: field names, types (numbers and booleans as such),
defaults and help come from the model. Keys that look like secrets (``password``, ``token``...) are not
settings: in ``[networks.<name>]`` they hold references, passed to the link flow as defaults, and are left
out of validation. Connectors without a model keep getting the plain mapping.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from ..connectors.protocol import ConnectorContext, FieldType, FormField
from ..errors import ConfigError
from ..observability.logging import looks_secret

FieldValue = str | int | float | bool | tuple[str, ...] | None

OPERATOR_ONLY: dict[str, Any] = {"operator_only": True}
"""``Field(..., json_schema_extra=OPERATOR_ONLY)``: a setting only ``[networks.<name>]`` may set (an API base
URL, a CA file, a server the operator chose). A link request or link answer naming it is refused, and the
link form leaves it out: nothing a client sends is read as a local path or decides where the bridge
connects on the operator's behalf."""


class OperatorSettingRefused(ConfigError):
    code = "operator_setting"


def operator_only_keys(model: type[BaseModel] | None) -> frozenset[str]:
    """The settings of ``model`` that only the operator's config may set."""
    if model is None:
        return frozenset()
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("operator_only") is True
    )


def refuse_operator_keys(model: type[BaseModel] | None, given: Mapping[str, Any], *, network: str) -> None:
    """Refuse client-supplied values (link settings or answers) for operator-only settings."""
    named = sorted(k for k in operator_only_keys(model) if k in given and given[k] not in (None, ""))
    if named:
        raise OperatorSettingRefused(
            f"{', '.join(named)} can only be set by the operator for {network}",
            hint=f"set it in [networks.{network}] of the bridge's config; a link request cannot",
        )


def settings_model_of(connector: Any) -> type[BaseModel] | None:
    """The connector's (or description's) declared settings model, or None."""
    model = getattr(connector, "settings_model", None)
    if model is None:
        return None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"settings_model must be a pydantic model class, got {model!r}")
    return model


def without_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not looks_secret(k)}


def validate_settings(
    model: type[BaseModel], values: Mapping[str, Any], *, network: str, where: str | None = None
) -> BaseModel:
    """The validated model, or a ``ConfigError`` that names every bad key and where it came from."""
    try:
        return model.model_validate(coerce(model, without_secrets(values)))
    except ValidationError as exc:
        place = where or f"[networks.{network}]"
        problems = [
            f"{place} {'.'.join(str(p) for p in err['loc']) or '(table)'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
        known = ", ".join(model.model_fields) or "none"
        raise ConfigError("\n".join(problems), hint=f"the {network} settings are: {known}") from None


def coerce(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """Form answers as the model takes them: a list field answered with one string is comma-separated,
    and an empty answer means "not given" (the default applies)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        info = model.model_fields.get(key)
        if value == "" and info is not None and not info.is_required():
            continue
        if info is not None and isinstance(value, str) and field_type(info.annotation) == "list":
            value = [item.strip() for item in value.split(",") if item.strip()]
        out[key] = value
    return out


def _unwrap(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    if origin is not None and getattr(annotation, "__metadata__", None) is not None:  # Annotated
        return _unwrap(get_args(annotation)[0])
    return annotation


def field_type(annotation: Any) -> FieldType:
    """How a form shows a field of this type."""
    inner = _unwrap(annotation)
    origin = get_origin(inner)
    if inner is bool:
        return "boolean"
    if inner is int:
        return "integer"
    if inner is float:
        return "number"
    if origin in (list, tuple, set, frozenset) or inner in (list, tuple):
        return "list"
    if origin is Literal and all(isinstance(a, bool) for a in get_args(inner)):
        return "boolean"
    return "string"


def _form_value(value: Any) -> FieldValue:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return str(value)


def form_fields(
    model: type[BaseModel], *, defaults: Mapping[str, Any] | None = None, exclude: Iterable[str] = ()
) -> tuple[FormField, ...]:
    """The link form for ``model``: one field per setting, typed, with its default (``defaults``, e.g.
    ``[networks.<name>]``, win over the model's) and its description as help."""
    given = without_secrets(defaults or {})
    skip = set(exclude) | operator_only_keys(model)
    fields = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        default: Any = PydanticUndefined
        if name in given:
            default = given[name]
        elif info.default is not PydanticUndefined:
            default = info.default
        elif info.default_factory is not None:
            default = info.default_factory()  # type: ignore[call-arg]
        fields.append(
            FormField(
                name=name,
                label=info.title or name.replace("_", " ").capitalize(),
                type=field_type(info.annotation),
                required=info.is_required() and name not in given,
                default=None if default is PydanticUndefined else _form_value(default),
                help=info.description,
            )
        )
    return tuple(fields)


def check_network_tables(
    networks: Mapping[str, Mapping[str, Any]], connectors: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """``[networks.<name>]`` tables against the installed connectors' models: (problems, notes). A table of
    a network with no installed connector, or whose connector declares no model, is a note, not a problem."""
    problems: list[str] = []
    notes: list[str] = []
    for network, table in sorted(networks.items()):
        connector = connectors.get(network)
        if connector is None:
            notes.append(f"[networks.{network}]: no installed connector for {network!r}; not checked")
            continue
        model = settings_model_of(connector)
        if model is None:
            notes.append(f"[networks.{network}]: the connector declares no settings model; not checked")
            continue
        # a network table holds defaults: a required setting may be left to each account's link answers
        try:
            validate_settings(_all_optional(model), table, network=network)
        except ConfigError as exc:
            problems.append(exc.explain())
    return problems, notes


def _all_optional(model: type[BaseModel]) -> type[BaseModel]:
    from pydantic import create_model

    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        fields[name] = (annotation | None, None) if info.is_required() else (annotation, info)
    defaults: type[BaseModel] = create_model(f"{model.__name__}Defaults", __base__=model, **fields)
    return defaults


def settings_of[M: BaseModel](ctx: ConnectorContext, model: type[M]) -> M:
    """The connector's typed settings: the instance the core validated at start, or (a context built by
    hand, in a test) ``ctx.settings`` validated now."""
    typed = ctx.typed_settings
    if isinstance(typed, model):
        return typed
    network = ctx.account.network
    return cast(M, validate_settings(model, ctx.settings, network=network))
