"""``node:port[:tag]``, parsed: the one part of the config that the runtime's graph layer reads.

Kept apart from :mod:`.schema` so that building and running graphs does not import pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PortRef:
    """One end of a connection, parsed from ``node:port[:tag]``.

    ``tag`` selects an element of a list port (its position) or a dict port (its key); ``None``
    when absent. ``str(ref)`` gives back the canonical string.
    """

    node: str
    port: str
    tag: str | None = None

    @classmethod
    def parse(cls, text: str) -> PortRef:
        """Parse ``node:port`` or ``node:port:tag``.

        Raises ``ValueError`` (message names the string and the rule broken) when ``text`` is not a
        string, contains whitespace, has fewer than 2 or more than 3 ``:``-separated parts, or has
        an empty part.
        """
        if not isinstance(text, str):
            raise ValueError(f"port must be a string 'node:port[:tag]', got {text!r}")
        if any(ch.isspace() for ch in text):
            raise ValueError(f"bad port {text!r}: whitespace is not allowed in 'node:port[:tag]'")
        parts = text.split(":")
        if not 2 <= len(parts) <= 3:
            raise ValueError(
                f"bad port {text!r}: expected 'node:port' or 'node:port:tag', got {len(parts)} part(s)"
            )
        if not all(parts):
            raise ValueError(f"bad port {text!r}: empty part in 'node:port[:tag]'")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        return f"{self.node}:{self.port}" if self.tag is None else f"{self.node}:{self.port}:{self.tag}"
