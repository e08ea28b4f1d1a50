"""Helpers for testing msgr-bridge and connector plugins: fakes of the core's doors, server fixtures and the
connector contract suite. Shipped with the package so plugin authors run what our own connectors pass."""
