"""Where a VideoServer may connect: its ``allow_hosts``, and the addresses no live URL reaches by default.

Entries of ``allow_hosts`` (node arg, a list or one string; any case): a host name
(``cam1.example.com``), a wildcard (``*.cams.example.com``: any name that ends in
``.cams.example.com``, at any depth, not ``cams.example.com`` itself), an IP address (``10.0.0.7``,
``fd00::7``, ``[fd00::7]``) or a network (``10.0.0.0/8``, ``fd00::/8``, ``[fd00::]/8``). A bad entry is
a ValueError naming it, at the node's build.

:meth:`HostPolicy.refusal` says why a live URL's host is refused, or None:

* Always, with or without ``allow_hosts``: link-local and cloud metadata addresses
  (:data:`BLOCKED`: 169.254.0.0/16, fe80::/10, fd00:ec2::254; IPv4-mapped IPv6 forms too) and the
  metadata names (:data:`METADATA_NAMES`) are refused, unless explicitly allowed: by an exact name
  entry for the host, or by an address or network entry that contains the address and lies inside
  those ranges (``169.254.169.254``, ``169.254.0.0/16``; ``0.0.0.0/0`` does not open them).
* A host name is resolved (``socket.getaddrinfo`` on a thread of its own, at most ``timeout``
  seconds; callers run off the event loop) and every address it resolves to is checked, so a name
  pointing at 169.254.169.254 is refused like the address itself. A name that does not resolve (or
  not in time) is let through when no ``allow_hosts`` is given (the reader reports it and
  reconnects), and refused when its name matches no entry (its addresses cannot be checked).
* With ``allow_hosts``: a host is accepted when its name matches a name or wildcard entry, or
  when it is an address, or resolves only to addresses, inside the address and network entries.
  Without ``allow_hosts`` every other host is accepted.

Not covered: a DNS answer that changes between this check and the reader's own resolution (DNS
rebinding; the reader resolves again when it connects, and on every reconnect). Give addresses,
or names under your own DNS, where that matters.

Reasons name the host and the setting, never the URL (it may hold secrets).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from urllib.parse import urlsplit

BLOCKED = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"))
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata"})
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_\-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_\-]*[a-z0-9_])?)*")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve(host: str, timeout: float = 2.0) -> list[Address] | None:
    """The addresses ``host`` resolves to; None when it does not resolve within ``timeout`` s."""
    box: dict = {}

    def run():
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            box["addrs"] = sorted({ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}, key=str)
        except (OSError, UnicodeError, ValueError):
            box["addrs"] = None

    thread = threading.Thread(target=run, name="megflow-resolve", daemon=True)  # a stuck lookup is left
    thread.start()
    thread.join(timeout)
    return box.get("addrs")


def host_of(url: str) -> str | None:
    """The host a URL names (lower case, no brackets, no trailing dot), None when it names none."""
    try:
        host = urlsplit(url).hostname
    except ValueError:  # an unclosed IPv6 bracket, a bad port
        return None
    return host.rstrip(".") or None if host else None


def _plain(address: Address) -> Address:
    """An IPv4-mapped IPv6 address as the IPv4 address it is; others as they are."""
    return getattr(address, "ipv4_mapped", None) or address


def _literal(host: str) -> Address | None:
    try:
        return _plain(ipaddress.ip_address(host.split("%")[0]))  # fe80::1%eth0: the zone does not matter
    except ValueError:
        return None


def _in(address: Address, network) -> bool:
    return address.version == network.version and address in network


class HostPolicy:
    """The ``allow_hosts`` of one VideoServer (see the module's docstring)."""

    def __init__(self, entries=None, resolver=resolve, timeout: float = 2.0):
        entries = [entries] if isinstance(entries, str) else list(entries or [])
        self.given = bool(entries)
        self.names: set[str] = set()
        self.wildcards: list[str] = []  # suffixes, with their leading dot
        self.networks: list = []
        self.resolver, self.timeout = resolver, timeout
        for entry in entries:
            self._add(entry)
        # the entries that open link-local and metadata addresses: inside those ranges
        self.explicit = [n for n in self.networks if any(n.version == b.version and n.subnet_of(b) for b in BLOCKED)]

    def _add(self, entry) -> None:
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"allow_hosts: an entry is a host name, *.domain, an address or a network, got {entry!r}")
        text = entry.strip().lower().rstrip(".")
        net = re.fullmatch(r"\[([0-9a-f:.]+)\](/\d+)?", text)
        if net:
            text = net.group(1) + (net.group(2) or "")
        try:
            self.networks.append(ipaddress.ip_network(text, strict=False))
            return
        except ValueError:
            pass
        if text.startswith("*.") and _NAME.fullmatch(text[2:]):
            self.wildcards.append(text[1:])
        elif _NAME.fullmatch(text) and not text.replace(".", "").isdigit():
            self.names.add(text)
        else:
            raise ValueError(f"allow_hosts: {entry!r} is not a host name, *.domain, an IP address or a network "
                             "(10.0.0.0/8, [fd00::]/8)")

    def describe(self) -> str:
        return ", ".join(sorted(self.names) + [f"*{w}" for w in self.wildcards] + [str(n) for n in self.networks])

    def name_listed(self, host: str) -> bool:
        return host in self.names or any(host.endswith(w) for w in self.wildcards)

    def _blocked(self, address: Address) -> bool:
        return any(_in(address, b) for b in BLOCKED) and not any(_in(address, n) for n in self.explicit)

    def refusal_of(self, url: str) -> str | None:
        """Why live ``url`` may not be opened, or None (see :meth:`refusal`)."""
        host = host_of(url)
        if host is None:
            return "the URL names no host"
        return self.refusal(host)

    def refusal(self, host: str) -> str | None:
        """Why ``host`` may not be connected to (one line, naming the host and the setting), or None.
        May take up to ``timeout`` seconds (a DNS lookup): never call it on an event loop."""
        host = host.lower().rstrip(".")
        literal = _literal(host)
        exact = host in self.names
        if literal is not None:
            addrs = [literal]
        else:
            if host in METADATA_NAMES and not exact:
                return f"host {host} is a cloud metadata service (allow_hosts may list it by name)"
            addrs = self.resolver(host, self.timeout)
            addrs = None if addrs is None else [_plain(a) for a in addrs]
        for address in addrs or []:
            if self._blocked(address) and not exact:
                what = f"host {host}" if literal is not None else f"host {host} resolves to {address}, which"
                return (f"{what} is a link-local or cloud metadata address (allow_hosts may list it: the "
                        "address, a network inside 169.254.0.0/16 or fe80::/10, or the exact name)")
        if not self.given or self.name_listed(host):
            return None
        if addrs is None:
            return f"host {host} could not be resolved to check it against the server's allow_hosts"
        if addrs and all(any(_in(a, n) for n in self.networks) for a in addrs):
            return None
        return f"host {host} is not in the server's allow_hosts"
