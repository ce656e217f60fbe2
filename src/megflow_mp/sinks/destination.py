"""What a destination is to an outlet: ``send`` a batch, returning only once it was accepted.

A destination is built from the node's arguments when the node is built (so a bad argument fails
the start with one line, :class:`~.config.SinkConfigError`) and connects on its first ``send``, in
the delivery thread (an unreachable destination at start is an outage like any other: a WARNING
and the spool). ``shown`` is where it delivers, without secrets; :meth:`explain` is an exception's
text with every secret it knows replaced by ``***``.
"""

from __future__ import annotations

import string


class Destination:
    kind = ""
    shown = ""

    def __init__(self):
        self.secrets: list = []  # Secret objects whose values must never be shown

    def send(self, records: list[dict], payloads: list[str]) -> None:
        """Deliver ``payloads`` (each the JSON of the record beside it); raise unless all were accepted."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def explain(self, exc: BaseException) -> str:
        text = str(exc)
        for secret in self.secrets:
            if secret is not None and secret.value:
                text = text.replace(secret.value, "***")
        return text[:300]


def template(a, arg: str, text: str, fields=("stream", "node")):
    """Check a ``{stream}`` / ``{node}`` template (MQTT topic, redis key); returns a function of
    ``(stream, node)`` that fills it."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise a.error(arg, f"bad template {text!r} ({exc})") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in fields or spec or conversion:
            raise a.error(arg, f"bad template {text!r}: {{{field}}} is not one of "
                               f"{', '.join('{' + f + '}' for f in fields)}")
    if not text:
        raise a.error(arg, "must not be empty")

    def fill(stream, node) -> str:
        return text.format(stream="none" if stream is None else stream, node=node)

    return fill
