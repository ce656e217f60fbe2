"""The one error family of megflow-mp.

Every error the engine raises on purpose derives from :class:`MegFlowError`. Each class carries
structured fields and formats them in ``__str__`` so that the CLI can print ``str(err)`` and exit
non-zero without a traceback. Errors never cross process boundaries as pickled objects: workers send
``(node, exception type, traceback text)`` as data (see :class:`NodeFailure`).
"""

from __future__ import annotations

from dataclasses import dataclass


class MegFlowError(Exception):
    """Base class: an error a user can act on; ``str()`` is the full, human-readable message."""


class ConfigError(MegFlowError):
    """A configuration file is malformed or inconsistent.

    ``file`` is the file the bad value came from, ``path`` the TOML path of the field
    (``graphs[1].connections[0].ports[1]``; empty for whole-file errors), ``message`` what is wrong.
    """

    def __init__(self, message: str, file: str | None = None, path: str = ""):
        self.message = message
        self.file = file
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.path:
            where = f"{where}: {self.path}"
        return f"{where}: {self.message}"


class UsageError(MegFlowError):
    """The command line (or a ``Graph(...)`` call) names no usable config or plugin directory."""


class PluginError(MegFlowError):
    """A plugin module failed to import, or a plugin object is not usable.

    ``file`` is the plugin's source file, ``detail`` the traceback text or reason.
    """

    def __init__(self, message: str, file: str | None = None, detail: str = ""):
        self.message = message
        self.file = file
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.file}: {self.message}" if self.file else self.message
        return f"{head}\n{self.detail.rstrip()}" if self.detail else head


class ChannelClosed(MegFlowError):
    """Sending on a port whose channel was closed by this side (the node already ended it)."""


class PeerDied(MegFlowError):
    """The process at the other end of a channel died; what it held is lost."""


@dataclass(frozen=True)
class NodeFailure:
    """An exception raised in a node's ``exec`` or constructor, as data.

    Crosses process boundaries (workers report it to the supervisor) and is printed by the CLI.
    """

    node: str
    instance: str
    exc_type: str
    traceback: str

    def describe(self) -> str:
        """``node 'graph/node' failed: reason`` for the engine's one-line errors, else the exception
        type and the traceback. ``node`` is the graph path (``main/source#3/det``: node ``det`` of the
        instance for address/stream 3 that ``source`` created)."""
        text = self.traceback.strip()
        if "\n" not in text:
            return f"node {self.node!r} failed: {text}"
        return f"node {self.node!r} failed with {self.exc_type}:\n{text}"

    def summary(self) -> str:
        """One line: the node and the exception (the traceback's last line), for a reply or a status."""
        last = next((line for line in reversed(self.traceback.strip().splitlines()) if line.strip()), self.exc_type)
        return f"node {self.node!r} failed: {last.strip()}"


class AppFailed(MegFlowError):
    """The app ended because of node failures or dead workers; ``reasons`` lists each one."""

    def __init__(self, reasons: list[str]):
        self.reasons = list(reasons)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "app failed:\n" + "\n".join(f"- {r}" for r in self.reasons)


class Cancelled(BaseException):
    """Thrown into a task that the engine stops (drain or shutdown); plugins should not catch it."""


class EnvelopeMoved(RuntimeError):
    """An envelope was used after ``send`` moved it to another node."""


class FrontDoorError(MegFlowError):
    """The server cannot listen (address in use, bad host) or failed to start."""


class AuthError(MegFlowError):
    """Auth cannot work as configured: a tokens file missing, unreadable or malformed, a bad token
    name or role, or a server reachable from other machines without auth; ``str()`` says what to do."""


class RequestFailed(MegFlowError):
    """A node raised on this request; ``str()`` names the node and its exception."""


class ServiceStopping(RequestFailed):
    """The app is ending (a worker failed, or it was stopped) while this request waited: answered 503."""


class ReaderError(MegFlowError):
    """A video source could not be opened; ``str()`` names the URL or path and the reason. ``url`` and
    ``reason`` show the URL's secrets as ``***`` (:mod:`megflow_mp.video.redact`)."""

    def __init__(self, url: str, reason: str):
        self.url, self.reason = url, reason
        super().__init__(reason)


class ModelError(MegFlowError):
    """A model file cannot be loaded or run, or an input does not fit it; ``str()`` says why."""


class RebatchError(ModelError):
    """A graph cannot be given a symbolic batch axis (or ``onnx`` is missing); ``str()`` says why."""


class QuickstartError(MegFlowError):
    """The dialog cannot go on (a bad flag, the input ended, a template that cannot be fetched);
    ``str()`` says why and what to do. Nothing has been written when it is raised."""


class ClusterError(MegFlowError):
    """An app cannot run on the Ray cluster (``--ray``): Ray missing or unreachable, a placement no
    machine can give, a machine that does not have the app's files."""
