"""The URL and address rules of remote attachment fetches (``msgr_bridge.sdk.urls``)."""

from __future__ import annotations

import ipaddress

import pytest

from msgr_bridge.errors import AttachmentRefused
from msgr_bridge.sdk.urls import AddressRules, is_public, refuse_local_reference


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "FILE:///x", "/var/lib/msgr/keystore", "../share-link.key", "C:\\key"]
)
def test_local_files_and_paths_are_refused(url: str) -> None:
    with pytest.raises(AttachmentRefused):
        refuse_local_reference(url)


@pytest.mark.parametrize("url", ["https://example.org/a.png", "mxc://server/media"])
def test_other_schemes_pass_the_local_check(url: str) -> None:
    refuse_local_reference(url)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "fc00::1",
        "100.64.0.1",
        "224.0.0.1",
        "ff02::1",
        "0.0.0.0",
        "240.0.0.1",
        "::ffff:127.0.0.1",
        "64:ff9b::a00:1",  # NAT64 form of 10.0.0.1
        "2002:7f00:1::",  # 6to4 form of 127.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    with pytest.raises(AttachmentRefused, match=r"host\.example is at"):
        AddressRules().check(address, "host.example")


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111", "1.1.1.1"])
def test_public_addresses_pass(address: str) -> None:
    AddressRules().check(address, "host.example")


def test_an_operator_can_allow_a_network() -> None:
    rules = AddressRules.allowing(["127.0.0.1/32", "fd00:1::/64"])
    rules.check("127.0.0.1", "localhost")
    rules.check("::ffff:127.0.0.1", "localhost")
    rules.check("fd00:1::5", "nas")
    for still_refused in ("127.0.0.2", "::1", "10.0.0.1"):
        with pytest.raises(AttachmentRefused):
            rules.check(still_refused, "x")
