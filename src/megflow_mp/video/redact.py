"""Secrets in video source URLs, hidden wherever a URL or a reason is shown.

Contract:

* :func:`redact_url` is what every place that shows a URL shows (``/list``, ``/streams``, the live
  view pages, the dashboard and the metrics snapshot, log lines, replies): the user info of the
  URL's authority is replaced as a whole by ``***`` (``rtsp://admin:pw@cam:554/s`` ->
  ``rtsp://***@cam:554/s``; a lone token as user info goes the same way), and the value of every
  ``name=value`` pair of the path, query or fragment whose name holds ``password``, ``passwd``,
  ``pwd``, ``token``, ``key``, ``secret``, ``auth`` or ``signature`` (any case, also inside a name:
  ``api_key``, ``X-Auth``, ``access_token``) is ``***`` (``?token=abc&channel=1`` ->
  ``?token=***&channel=1``). The rest is left as given, byte for byte (no re-encoding). A string
  without a ``scheme:`` prefix (a file path) is returned unchanged; one that does not parse as a
  URL (an unclosed IPv6 bracket, ``rtsp:/user:pw@host`` with one slash) is redacted by the same
  textual rules, never raises, and never shows what it hides.
* :func:`scrub` is for free text about a URL (an FFmpeg error, ``Connection refused:
  'rtsp://admin:pw@...'``): occurrences of the URL become its redacted form, then every secret the
  URL holds (the user info, the password, the secret values; as written, percent-decoded and
  percent-encoded) is replaced by ``***`` wherever it occurs, even inside other words. A user
  name beside a password is not sought in free text (it is not a secret; the URL form hides it
  anyway).
* The real URL stays where the source is opened (the reader) and in the server's state file
  (:mod:`.state`, readable by its owner only).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

MASK = "***"
SECRET_WORDS = ("password", "passwd", "pwd", "token", "key", "secret", "auth", "signature")
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*:/*)([^/?#]*)(.*)", re.S)  # scheme:, authority, the rest


def is_secret_name(name: str) -> bool:
    """Whether a parameter called ``name`` (percent-encoded or not) holds a secret."""
    plain = unquote(name).lower()
    return any(word in plain for word in SECRET_WORDS)


def _params(part: str, seps: str):
    """``(start, end)`` of each secret value in ``part``, a run of ``name=value`` pairs split by ``seps``."""
    pattern = re.compile(rf"(?:^|[{re.escape(seps)}])([^{re.escape(seps)}=]*)=([^{re.escape(seps)}]*)")
    for m in pattern.finditer(part):
        if m.group(2) and is_secret_name(m.group(1)):
            yield m.start(2), m.end(2)


def _masked(part: str, seps: str) -> tuple[str, list[str]]:
    """``part`` with its secret values masked, and the values."""
    out, found, last = [], [], 0
    for start, end in _params(part, seps):
        out += [part[last:start], MASK]
        found.append(part[start:end])
        last = end
    out.append(part[last:])
    return "".join(out), found


def _split(url: str):
    """``(redacted URL, secrets as written)``; secrets is empty for a string that is not a URL."""
    m = _URL.fullmatch(url) if isinstance(url, str) else None
    if m is None:
        return url, []
    scheme, authority, rest = m.groups()
    secrets = []
    if "@" in authority:
        userinfo, hostport = authority.rsplit("@", 1)
        authority = f"{MASK}@{hostport}"
        user, colon, password = userinfo.partition(":")
        secrets += [userinfo, password] if colon else [userinfo]
    before_hash, hash_, fragment = rest.partition("#")
    path, qmark, query = before_hash.partition("?")
    path, found = _masked(path, "/&;")
    secrets += found
    query, found = _masked(query, "&;")
    secrets += found
    fragment, found = _masked(fragment, "&;")
    secrets += found
    return f"{scheme}{authority}{path}{qmark}{query}{hash_}{fragment}", [s for s in secrets if s]


def redact_url(url: str) -> str:
    """``url`` with its secrets shown as ``***`` (see the module's docstring); a file path unchanged."""
    return _split(url)[0]


def secrets_of(url: str) -> list[str]:
    """The secret strings ``url`` holds, as written, percent-decoded and percent-encoded, longest first."""
    forms = set()
    for secret in _split(url)[1]:
        forms |= {secret, unquote(secret), quote(unquote(secret), safe="")}
    return sorted((s for s in forms if s), key=lambda s: (-len(s), s))


def scrub(text, url: str):
    """``text`` (a reason, an error message; None passes) with ``url`` and the secrets it holds hidden."""
    if not text or not isinstance(url, str):
        return text
    text = str(text)
    shown = redact_url(url)
    if shown == url:
        return text
    text = text.replace(url, shown)
    for secret in secrets_of(url):
        text = text.replace(secret, MASK)
    return text
