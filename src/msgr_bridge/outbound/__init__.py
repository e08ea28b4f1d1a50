"""Outbound: request -> outbox -> policy -> impersonation -> rate limit -> connector -> delivery status.

Read the modules in that order: ``outbox`` (the request and how it is stored), ``service`` (accepting a
request: impersonation, capabilities, policy, the outbox row), ``policy``, ``impersonation``, ``ratelimit``,
``delivery`` (the worker: retries, order, crash recovery) and ``recording`` (storing a delivery batch).
"""
