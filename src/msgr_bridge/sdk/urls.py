"""Which attachment URLs the bridge may read, and which addresses a remote fetch may reach.

Nothing a client sends is read as a local path: ``file:`` URLs and references without a scheme (``/etc/x``,
``../key``, ``C:\\x``) are refused everywhere. A remote fetch reaches public addresses only: loopback,
private, link-local, shared (CGNAT), multicast, reserved and unspecified addresses are refused unless the
operator lists a network containing them (``[media] fetch_allow_networks``). IPv4 addresses written as
IPv6 (``::ffff:127.0.0.1``, NAT64 and 6to4 forms) are judged as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import AttachmentRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
REMOTE_SCHEMES = frozenset({"http", "https"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case; "" for a bare path (a Windows drive letter counts as a path)."""
    scheme = urlsplit(url.strip()).scheme.lower()
    return "" if len(scheme) == 1 else scheme


def refuse_local_reference(url: str, what: str = "attachment") -> None:
    """``AttachmentRefused`` for a ``file:`` URL or a bare path: the bridge never reads local files for
    anyone. Every other scheme passes here (``http(s)`` is judged by the fetch rules, network-native
    references such as ``mxc://`` by the network)."""
    scheme = scheme_of(url)
    if scheme == "file":
        raise AttachmentRefused(
            f"{what} URL {url!r} is a file: URL; the bridge never reads local files for a client",
            hint="upload the file (a multipart send) or send a share link to it",
        )
    if not scheme:
        raise AttachmentRefused(
            f"{what} URL {url!r} has no scheme; local paths are never read",
            hint="upload the file (a multipart send) or send a share link to it",
        )


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """True for a globally routable unicast address (what a remote fetch may reach by default)."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        return is_public(inner)
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


@dataclass(frozen=True, slots=True)
class AddressRules:
    """Where a remote fetch may connect: public addresses, and those inside ``allowed`` networks."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def allowing(cls, networks: Iterable[str]) -> AddressRules:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def check(self, address: str | IPAddress, host: str) -> None:
        """``AttachmentRefused`` unless ``address`` (of ``host``) may be reached."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if is_public(ip) or any(ip in net for net in self.allowed if net.version == ip.version):
            return
        inner = _embedded_ipv4(ip)
        if inner is not None and any(inner in net for net in self.allowed if net.version == 4):
            return
        raise AttachmentRefused(
            f"the attachment host {host} is at {ip}, a loopback, private, link-local or reserved address",
            hint="remote attachments are fetched from public addresses only; an operator can allow a "
            "network with [media] fetch_allow_networks",
        )


def literal_address(host: str) -> IPAddress | None:
    """The address when ``host`` is an IP literal (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
