"""Safe by default: which servers may serve without auth, and their TLS.

A server whose ``host`` is not a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``) is
reachable from other machines: it starts only with auth (``[auth] tokens = "tokens.toml"`` in the
config, or ``run --auth-tokens FILE``) or with ``insecure = true`` on its node (then a warning at
every start). A loopback server without auth behaves as it always did. :func:`exposure_problems`
lists the refusals of a whole app (checked by ``megflow-mp run`` before anything starts, one line
each); :func:`check_exposed` is the same check for one server, where it starts (a program that
embeds the engine, a cluster's machine).

TLS: ``tls_cert`` and ``tls_key`` (PEM files; relative paths from the working directory) on a
server's node make it serve HTTPS: :func:`tls_context` loads them when the server is built, so a
missing or unreadable file is one start-up error naming the node.
"""

from __future__ import annotations

import ipaddress
import logging

from ..errors import AuthError, FrontDoorError

log = logging.getLogger("megflow_mp")
HOW = ("create a token (megflow-mp token add NAME --role operator --file tokens.toml) and add "
       "`[auth] tokens = \"tokens.toml\"` to the config (or run with --auth-tokens tokens.toml), "
       "or set `insecure = true` on the node to serve it without auth")


def is_loopback(host: str) -> bool:
    host = str(host).strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def truthy(value) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes")


def check_exposed(name: str, host: str, insecure, auth) -> None:
    """Raise AuthError (one line) when server ``name`` on ``host`` would serve other machines without
    auth and without ``insecure``; warn when it does so with ``insecure = true``."""
    if auth or is_loopback(host):
        return
    if truthy(insecure):
        log.warning("%s serves %s without auth (insecure = true): anyone who reaches this address may call "
                    "every route", name, host)
        return
    raise AuthError(f"{name} listens on {host}, reachable from other machines, without auth: {HOW}")


def exposure_problems(app, auth) -> list[str]:
    """One line per server node of ``app`` that :func:`check_exposed` would refuse, naming the config
    file and the node's ``host`` as the config's other errors name their field."""
    problems = []
    for decl in app.decls.values():
        if not getattr(decl.ntype.factory, "interactive", False):
            continue
        host = str(decl.args.get("host", "127.0.0.1"))
        if not auth and not is_loopback(host) and not truthy(decl.args.get("insecure", False)):
            problems.append(f"{app.file}: {decl.graph}/{decl.name}.host: the server listens on {host}, reachable "
                            f"from other machines, without auth: {HOW}")
    return problems


def tls_context(name: str, cert, key):
    """An ``ssl.SSLContext`` serving ``cert``/``key`` (None when neither is given); FrontDoorError
    naming server ``name`` when only one is given or a file cannot be loaded."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise FrontDoorError(f"{name}: TLS needs both tls_cert and tls_key (got only "
                             f"{'tls_cert' if cert else 'tls_key'})")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise FrontDoorError(f"{name}: cannot load TLS certificate {cert} / key {key}: {reason}") from None
    return context


def tokens_of(app):
    """The tokens file of ``app`` (``[auth] tokens`` or ``--auth-tokens``), or None."""
    return getattr(app, "auth", None)


__all__ = ["AuthError", "check_exposed", "exposure_problems", "is_loopback", "tls_context", "tokens_of"]
