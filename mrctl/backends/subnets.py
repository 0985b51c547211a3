"""Choosing the workers' internal network: a subnet that holds none of the host's addresses.

A worker on an internal bridge has a route only to its own subnet. If that subnet held one of
the engine host's addresses (docker0's 172.17.0.1, say), the host would answer for it on the
bridge and a worker could reach every service the host listens on there. Docker's own pick
is not checked against that on every engine (one CI machine handed out such a subnet), so
mrctl asks for an explicit /24 from `POOL` that overlaps no network and no address it knows.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from collections.abc import Iterable, Iterator

POOL = ipaddress.ip_network("10.213.0.0/16")  # carved into /24s: 256 clusters at once
PREFIX = 24

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B

Net = ipaddress.IPv4Network


def candidates(avoid: Iterable[Net], pool: Net = POOL, start: int = 0) -> Iterator[Net]:
    """The /24s of `pool` overlapping none of `avoid`, beginning at the `start`-th (so that
    clusters starting at once try different ones first) and wrapping round."""
    avoid = [n for n in avoid if n.version == 4]
    subnets = list(pool.subnets(new_prefix=PREFIX))
    for i in range(len(subnets)):
        subnet = subnets[(start + i) % len(subnets)]
        if not any(subnet.overlaps(n) for n in avoid):
            yield subnet


def local_networks() -> list[Net]:
    """The IPv4 networks of this machine's interfaces (empty where the ioctls do not exist)."""
    found = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            request = struct.pack("256s", name.encode()[:15])
            try:
                address = socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFADDR, request)[20:24])
                mask = socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFNETMASK, request)[20:24])
            except OSError:  # no IPv4 address on this interface
                continue
            found.append(ipaddress.ip_network(f"{address}/{mask}", strict=False))
    return found
