"""Inbound: connector -> bus -> normalize -> dedupe -> persist -> notify.

Read the modules in that order: ``sink`` (what a connector pushes into), ``normalize``, ``dedupe``,
``hold`` (events that arrive before their target), ``persist``, ``notify``, and ``pipeline`` which runs them.
"""
