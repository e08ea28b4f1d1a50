"""The inbound pipeline's spans (only used while tracing is on; ``observability.tracing`` has the design).

Normalize and dedupe get a real span per payload. Persist and notify run once per batch: each payload gets a
span covering the batch's work, linked to one ``inbound.batch`` span that links every payload's trace.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..observability import tracing
from ..schema import Event
from .normalize import Converter, Quarantined, normalize
from .sink import RawInbound


def normalized(
    item: RawInbound, convert: Converter | None, parent: tracing.Parent
) -> Sequence[Event] | Quarantined:
    """``normalize`` inside an ``inbound.normalize`` span under the payload's trace (``parent``: its
    context, parsed once per payload)."""
    with tracing.span("inbound.normalize", parent) as s:
        result = normalize(item, convert)
        if s is not None:
            if isinstance(result, Quarantined):
                s.set_attribute("msgr.quarantined", result.error[:200])
            else:
                s.set_attribute("msgr.events", len(result))
    return result


def deduped(parent: tracing.Parent, duplicate: bool, start_ns: int) -> None:
    tracing.record_span(
        "inbound.dedupe", parent, start_ns, time.time_ns(), attributes={"msgr.duplicate": duplicate}
    )


def batch_stages(items: Sequence[RawInbound], start_ns: int, stages: Sequence[tuple[str, int, int]]) -> None:
    """The batch's stages seen from each payload: one ``inbound.batch`` span (a trace of its own, from
    ``start_ns`` to now, linking every payload's trace), then per payload one span per ``(name, start_ns,
    end_ns)`` stage under the payload's trace, each linked to the batch span."""
    parents = [tracing.context_of(i.trace) for i in items]
    links = [link for p in parents if (link := tracing.link_to(p)) is not None]
    batch = tracing.record_root(
        "inbound.batch", start_ns, time.time_ns(), links=links, attributes={"msgr.batch_size": len(items)}
    )
    batch_link = tracing.link_to(batch)
    own = [batch_link] if batch_link is not None else []
    attributes = {"msgr.batch_size": len(items)}
    for parent in parents:
        for name, begin, end in stages:
            tracing.record_span(name, parent, begin, end, links=own, attributes=attributes)
