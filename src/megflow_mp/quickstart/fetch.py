"""Fetching a template repository with ``git clone``.

Contract: :func:`clone` runs ``git clone --depth 1 [--branch B] URL DEST`` (any URL git accepts,
``file://`` included) with no terminal prompts (a repository that wants a password fails instead of
hanging) and returns nothing on success. Any failure (git missing, a bad URL or branch, the
network, the time limit) is a :class:`FetchError` whose ``str()`` is git's own reason. ``DEST``
must not exist; on failure it is removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["FetchError", "clone"]


class FetchError(Exception):
    """A template could not be fetched; ``str()`` says why (git's message)."""


def clone(url: str, dest: Path, branch: str = "", timeout: float = 300) -> None:
    """Clone ``url`` (``branch``: a branch or tag; empty: the repository's default) into ``dest``."""
    cmd = ["git", "clone", "--quiet", "--depth", "1"]
    if branch:
        cmd += ["--branch", branch]
    cmd += ["--", url, str(dest)]
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise FetchError("git is not installed (it is needed for --git)") from None
    except subprocess.TimeoutExpired:
        shutil.rmtree(dest, ignore_errors=True)
        raise FetchError(f"git clone took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        reason = "; ".join(lines[-3:]) or f"git clone exited with {done.returncode}"
        raise FetchError(reason)
