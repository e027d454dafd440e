"""Whether a host name or address stays on this machine.

The fake server, the guard proxy and the Ray engine each refuse to listen or serve beyond
loopback unless told otherwise, so they share one definition of it: ``localhost`` (with or
without the trailing dot of a fully qualified name), 127.0.0.0/8, ``::1``, and IPv4 loopback
written as an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, which a dual-stack socket reports).
Every other name may resolve anywhere, so it is not loopback.
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is loopback."""
    name = host.strip().strip("[]")
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # any other name may resolve anywhere
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or (mapped is not None and mapped.is_loopback)
