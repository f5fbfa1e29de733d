"""Per-client token buckets: the ``429`` of SPEC §5.

A client is its network address as collect sees it (the socket peer, or the header a trusted
load balancer sets, see ``client_key``); IPv6 addresses count per /64, the block one subscriber
usually holds. The buckets live in this process's memory only: no address is stored, logged or
sent on. Each worker limits on its own, so N workers on one port admit up to N times the rate
from one client; the default is generous enough that NAT'd offices and mobile carriers (many
visitors behind one address) never meet it, while a single flooding client does.
"""

from __future__ import annotations

import ipaddress
import math
from functools import lru_cache


class RateLimiter:
    """``rate`` requests per second per client, bursts up to ``burst``.

    At most ``max_clients`` buckets are kept; past that the oldest bucket is forgotten (its
    client starts again with a full bucket), so memory stays bounded under a flood of addresses.
    """

    __slots__ = ("rate", "burst", "max_clients", "_buckets")

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate must be > 0, burst and max_clients >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: dict[str, list[float]] = {}  # client -> [tokens, last refill (s)]

    def take(self, client: str, now: float) -> float:
        """0.0 when the request may pass, else the seconds until one would (never 0)."""
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                del self._buckets[next(iter(self._buckets))]
            self._buckets[client] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_s(wait_s: float) -> int:
    """The ``Retry-After`` value for a wait: whole seconds, at least 1."""
    return max(1, math.ceil(wait_s))


@lru_cache(maxsize=65_536)
def client_key(address: str) -> str:
    """The bucket key of an address: itself for IPv4, its /64 for IPv6, as given otherwise.

    For a header value (``X-Forwarded-For: client, proxy1``), the last entry is the one the
    trusted proxy in front of collect appended."""
    address = address.rpartition(",")[2].strip()
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.strip("[]"))
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:  # a dual-stack socket's view of an IPv4 client
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))
