"""The arguments every sink takes, secrets, and the one-line errors of a bad sink config.

A sink's arguments come from its ``[[nodes]]`` entry. :func:`common_args` reads the ones every sink
shares; each destination reads its own. Anything wrong raises :class:`SinkConfigError`, whose text is
one line naming the node type, the node and the argument (``WebhookSink 'hook': url: ...``), and
never a secret's value.

Secrets (passwords, tokens, HMAC keys, header values) are written ``env:NAME`` (the environment
variable ``NAME``) or ``file:/path`` (the file's text, one trailing newline removed); any other
string is taken as it is. A resolved secret is a :class:`Secret`: its ``str()`` and ``repr()`` are
``***``, so it cannot reach a log line, an error, a metric or ``/list`` by accident; ``.value``
is the text.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MegFlowError
from ..video.state import ENV as STATE_ENV


class SinkConfigError(MegFlowError, ValueError):
    """A sink's argument is wrong: ``str()`` is one line naming the node and the argument (an
    expected failure: the app's start fails with that line, no traceback)."""

    def __init__(self, kind: str, node: str, arg: str, why: str):
        self.kind, self.node, self.arg, self.why = kind, node, arg, why
        super().__init__(f"{kind} {node!r}: {arg}: {why}")


class Secret:
    """A secret's text (``.value``), shown as ``***``."""

    __slots__ = ("value", "source")

    def __init__(self, value: str, source: str = ""):
        self.value, self.source = value, source

    def __str__(self) -> str:
        return "***"

    __repr__ = __str__

    def __bool__(self) -> bool:
        return bool(self.value)


class Args:
    """Reads a sink's arguments; every error names the node and the argument."""

    def __init__(self, kind: str, name: str, args: dict):
        self.kind, self.name, self.args = kind, name, dict(args or {})

    def error(self, arg: str, why: str) -> SinkConfigError:
        return SinkConfigError(self.kind, self.name, arg, why)

    def get(self, arg: str, default=None):
        return self.args.get(arg, default)

    def string(self, arg: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.args.get(arg, default)
        if value is None:
            if required:
                raise self.error(arg, "required")
            return None
        if not isinstance(value, str):
            raise self.error(arg, f"expected a string, got {type(value).__name__}")
        return value

    def number(self, arg: str, default: float, least: float = 0.0, integer: bool = False):
        value = self.args.get(arg, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(arg, f"expected a number, got {value!r}")
        if integer and int(value) != value:
            raise self.error(arg, f"expected a whole number, got {value!r}")
        if value < least:
            raise self.error(arg, f"must be at least {least:g}, got {value!r}")
        return int(value) if integer else float(value)

    def choice(self, arg: str, default: str, choices: tuple) -> str:
        value = self.args.get(arg, default)
        if value not in choices:
            raise self.error(arg, f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value

    def secret(self, arg: str, value=None) -> Secret | None:
        """The secret of ``arg`` (or the given ``value`` of it, e.g. one header): ``env:``/``file:``
        resolved, None when absent."""
        raw = self.args.get(arg) if value is None else value
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise self.error(arg, f"expected a string ('env:NAME', 'file:/path' or the text), got {type(raw).__name__}")
        return resolve_secret(raw, lambda why: self.error(arg, why))


def resolve_secret(raw: str, error) -> Secret:
    """``env:NAME`` / ``file:/path`` / the text itself; ``error(why)`` builds the exception to raise."""
    if raw.startswith("env:"):
        name = raw[4:]
        if not name:
            raise error("'env:' needs a variable name ('env:HOOK_TOKEN')")
        if name not in os.environ:
            raise error(f"environment variable {name} is not set")
        return Secret(os.environ[name], raw)
    if raw.startswith("file:"):
        path = Path(raw[5:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise error(f"cannot read {path} ({type(exc).__name__}: {exc.strerror or exc})") from None
        return Secret(text[:-1] if text.endswith("\n") else text, raw)
    return Secret(raw, "text")


@dataclass(frozen=True)
class Common:
    """What every sink takes (see the WebhookSink reference)."""

    spool_dir: str | None  # None: the per-app default (:func:`default_spool_dir`)
    spool_max_bytes: int
    spool_fsync: bool
    batch: int
    linger: float  # seconds
    timeout: float
    retry_min: float
    retry_max: float
    drain_timeout: float


def common_args(a: Args, batch: int = 1, linger_ms: float = 0.0) -> Common:
    spool_fsync = a.get("spool_fsync", False)
    if not isinstance(spool_fsync, bool):
        raise a.error("spool_fsync", f"expected true or false, got {spool_fsync!r}")
    retry_min = a.number("retry_min", 0.1, least=0.001)
    retry_max = a.number("retry_max", 10.0, least=0.001)
    if retry_max < retry_min:
        raise a.error("retry_max", f"must be at least retry_min ({retry_min:g})")
    return Common(spool_dir=a.string("spool_dir") or None,
                  spool_max_bytes=a.number("spool_max_bytes", 64 << 20, least=1024, integer=True),
                  spool_fsync=spool_fsync,
                  batch=a.number("batch", batch, least=1, integer=True),
                  linger=a.number("linger_ms", linger_ms) / 1000.0,
                  timeout=a.number("timeout", 5.0, least=0.001),
                  retry_min=retry_min, retry_max=retry_max,
                  drain_timeout=a.number("drain_timeout", 5.0))


def default_spool_dir(app_file: str | None, node: str) -> Path:
    """``<MEGFLOW_MP_STATE_DIR>/spool/<node>`` when that is set (``run --state-dir``), else
    ``$XDG_STATE_HOME/megflow-mp/spool/<config stem>-<hash of its path>/<node>`` (``~/.local/state``
    when unset), else, outside an app (a test harness), ``.megflow-mp/spool/<node>``."""
    leaf = node.replace("/", "_").replace("@", "_")
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser() / "spool" / leaf
    if not app_file:
        return Path.cwd() / ".megflow-mp" / "spool" / leaf
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    config = Path(app_file).resolve()
    return base / "megflow-mp" / "spool" / f"{config.stem}-{hashlib.sha1(str(config).encode()).hexdigest()[:8]}" / leaf
