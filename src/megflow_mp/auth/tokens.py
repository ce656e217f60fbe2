"""The tokens file: who may call the front doors, as salted hashes, never as tokens.

A token is ``<id>.<secret>``: ``id`` (8 hex digits) names its entry in the file and is not secret;
``secret`` comes from :func:`secrets.token_urlsafe`. The file keeps, per name, the id, the role,
the creation time and ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (the KDF's parameters stored with the
hash, so they can change without breaking older entries); plus ``session_key``, the key that signs
browser sessions (:mod:`.session`), so every front door of an app (and ``--metrics-port``) accepts
the same cookie. The file is written whole (a temporary file renamed over it) with mode 0600.

Contract: :func:`read_tokens` raises :class:`~megflow_mp.errors.AuthError` for a missing, unreadable or
malformed file, naming it; :meth:`TokenEntry.matches` runs the KDF once and compares the result with
:func:`hmac.compare_digest`. Nothing here logs or returns a token other than :func:`new_token`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import AuthError

ROLES = ("viewer", "operator")
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SCRYPT = {"n": 1 << 14, "r": 8, "p": 1}  # ~16 MiB and tens of ms per check: why verified tokens are cached


@dataclass(frozen=True)
class TokenEntry:
    name: str
    id: str
    role: str
    created: str
    hash: str

    def matches(self, token: str) -> bool:
        """True when ``token`` is this entry's (one KDF run, constant-time comparison)."""
        try:
            kind, n, r, p, salt, digest = self.hash.split("$")
            if kind != "scrypt":
                return False
            got = _scrypt(token, _unb64(salt), int(n), int(r), int(p), len(_unb64(digest)))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(got, _unb64(digest))


@dataclass(frozen=True)
class TokenFile:
    path: Path
    entries: dict  # name -> TokenEntry
    session_key: bytes | None

    def by_id(self) -> dict:
        return {e.id: e for e in self.entries.values()}


def new_token() -> tuple[str, str]:
    """``(id, token)``: a fresh random token and the id it starts with."""
    kid = secrets.token_hex(4)
    return kid, f"{kid}.{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(token, salt, SCRYPT["n"], SCRYPT["r"], SCRYPT["p"], 32)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def _scrypt(token: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(token.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p, dklen=dklen,
                          maxmem=256 * r * (n + p + 2))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def read_tokens(path) -> TokenFile:
    """The file at ``path`` (AuthError when it is missing, unreadable or malformed)."""
    from ..config.loader import tomllib

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuthError(f"tokens file not found: {path} (create it: megflow-mp token add NAME --role operator "
                        f"--file {path})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"cannot read tokens file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AuthError(f"tokens file {path} is not valid TOML: {exc}") from None
    entries = {}
    for name, table in (doc.get("tokens") or {}).items():
        try:
            entry = TokenEntry(name, str(table["id"]), str(table["role"]), str(table.get("created", "")),
                               str(table["hash"]))
        except (KeyError, TypeError):
            raise AuthError(f"tokens file {path}: entry {name!r} needs id, role and hash") from None
        if entry.role not in ROLES:
            raise AuthError(f"tokens file {path}: entry {name!r} has role {entry.role!r} (viewer or operator)")
        entries[name] = entry
    key = doc.get("session_key")
    return TokenFile(path, entries, bytes.fromhex(key) if isinstance(key, str) and key else None)


def write_tokens(tokens: TokenFile) -> None:
    """Write ``tokens`` whole, mode 0600 (a temporary file in the same directory, renamed over it)."""
    lines = ["# megflow-mp tokens: salted hashes only (megflow-mp token add/list/revoke).", ""]
    if tokens.session_key:
        lines += [f'session_key = "{tokens.session_key.hex()}"', ""]
    for e in tokens.entries.values():
        lines += [f'[tokens."{e.name}"]', f'id = "{e.id}"', f'role = "{e.role}"', f'created = "{e.created}"',
                  f'hash = "{e.hash}"', ""]
    path = tokens.path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def add_token(path, name: str, role: str) -> str:
    """Add ``name`` with ``role`` to the file at ``path`` (created when missing); returns the token,
    which is stored nowhere. AuthError for a bad name or role, or a name already there."""
    path = Path(path)
    if not NAME.fullmatch(name):
        raise AuthError(f"token name {name!r}: 1 to 64 letters, digits, '_', '.', '-'")
    if role not in ROLES:
        raise AuthError(f"role {role!r}: viewer or operator")
    tokens = read_tokens(path) if path.exists() else TokenFile(path, {}, None)
    if name in tokens.entries:
        raise AuthError(f"a token named {name!r} is already in {path}: revoke it first")
    kid, token = new_token()
    entry = TokenEntry(name, kid, role, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), hash_token(token))
    write_tokens(TokenFile(path, {**tokens.entries, name: entry}, tokens.session_key or secrets.token_bytes(32)))
    return token


def revoke_token(path, name: str) -> None:
    """Remove ``name`` (AuthError when it is not in the file). Servers see it at their next request."""
    tokens = read_tokens(path)
    if name not in tokens.entries:
        raise AuthError(f"no token named {name!r} in {path}")
    write_tokens(TokenFile(tokens.path, {k: v for k, v in tokens.entries.items() if k != name}, tokens.session_key))
