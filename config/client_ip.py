"""The client's address, also behind reverse proxies.

`REMOTE_ADDR` is the address of whoever opened the TCP connection: behind nginx or Caddy that is
the proxy, so every participant would count as one client. `X-Forwarded-For` names the real
client, but any client can send that header itself. So the header is read only through the
proxies the deployment names in `TRUSTED_PROXIES` (addresses or networks): starting at
`REMOTE_ADDR`, while the address in hand is a trusted proxy, step one entry left in
`X-Forwarded-For` (the entry that proxy appended). The first untrusted address is the client.
An address a client wrote into the header itself lies further left and is never reached: the
first proxy appends the address it saw, and that is where the walk stops. With no trusted
proxies (the default) the header is ignored.

One rule for everything that counts per client: the enrolment throttle and django-axes
(`AXES_CLIENT_IP_CALLABLE`).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str | list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    """'127.0.0.1, 10.0.0.0/8' -> networks; raises ValueError naming the entry that is not one."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"TRUSTED_PROXIES: {item!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)


@lru_cache(maxsize=8)
def _trusted(spec: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(spec)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def client_ip(request) -> str:
    """The client's address (see the module docstring); '' when the connection has none."""
    remote = _address(request.META.get("REMOTE_ADDR", "") or "")
    if remote is None:
        return ""
    trusted = _trusted(tuple(settings.TRUSTED_PROXIES))
    if not trusted:
        return str(remote)
    hops = [h for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    current = remote
    while hops and any(current in network for network in trusted):
        previous = _address(hops.pop())
        if previous is None:  # a proxy we trust wrote something that is no address: stop there
            break
        current = previous
    return str(current)
