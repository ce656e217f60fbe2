"""A graph run from a Python program (MegFlow's ``megflow.Graph``), and ``block_on``.

::

    g = Graph(config_str=TOML)                  # builds the app and starts its worker processes

    def send():
        inp = g.input("inp")
        for i in range(n):
            inp.send(Envelope.pack(i))          # blocks (yields, in a join) while the channel is full
        g.close()                               # end of the inputs

    def recv():
        out = g.output("out")
        while (envelope := out.recv()) is not None:   # None: end of the stream
            ...

    block_on(lambda: join([recv, send]))        # both at once: a recv that waits lets the send go on
    g.wait()                                    # the end: every node finished, processes gone

Who does what: the program's process is the app's supervisor, as ``megflow-mp run`` is (it forks one
worker per node replica and owns them; :mod:`megflow_mp.program_host`), and it takes part in the app
the way a worker does: it holds the sending end of each graph input and the receiving end of each
graph output, with its own shared-memory arena and socket transport. Arrays the program sends are copied once into its shared
memory and reach the nodes as views; results come back as views of the nodes' shared memory. The
engine's side of this process runs only while the program is inside a call of this module (``send``,
``recv``, ``wait``, ``block_on``, ``join``); meanwhile the workers go on, and what is sent to the
program waits in bounded channels (a full one holds its sender back).

Contracts:

* A :class:`Graph` and its ports are used from the thread that built it (they run on that thread's
  hub). Build it and call :meth:`Graph.wait` outside ``block_on``; ``send``/``recv``/``close`` work
  inside and outside it.
* Node types: those of ``plugin_path`` (imported as ``megflow-mp run -p`` does, never the program's
  own file: a driver script beside its plugins with ``plugin_path="."`` runs once), the built-ins,
  and those registered by the module that builds the Graph and by ``__main__`` (a script may define
  its nodes itself, as MegFlow's examples do).
* A failure (a node raised, a worker died) raises :class:`~megflow_mp.errors.AppFailed` (each reason
  names the node and holds its error text and traceback) from the ``send``/``recv`` waiting at that
  moment or called later, and from ``wait``; the graph is then stopped.
* End: :meth:`Graph.wait` closes the inputs, discards results not received, waits until every node
  ended, stops the workers and frees the shared memory. A graph the program never waits for is
  stopped when the program exits (its workers also die with the program if it is killed).
* Ctrl-C (SIGINT, main thread) inside a call of this module stops every graph of the thread, then
  the call raises KeyboardInterrupt. The hub takes it between tasks, where no engine state is half
  updated (the stop runs that engine again): at once while it waits, at a task's next ``send``,
  ``recv``, ``sleep`` or ``yield_now`` while one computes. A second Ctrl-C before then, or during
  the stop, kills the workers at once (and, before then, raises where the program is). Outside the
  calls of this module Ctrl-C raises KeyboardInterrupt where the program is, as Python's handler
  does (a program's own SIGINT handler is left alone).
* The program's process does not become a child subreaper (it may have children of its own): worker
  processes are its children; processes a plugin forks are killed when their graph stops.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

import greenlet

from . import api
from .envelope import Envelope
from .errors import AppFailed, ChannelClosed, MegFlowError
from .program_host import ProgramHost
from .runtime import worker as _worker
from .runtime.channels import Inbox
from .runtime.hub import Hub

__all__ = ["Graph", "block_on"]

_LOCAL = threading.local()
_LIVE: set = set()  # graphs not yet waited for or stopped (stopped at exit)
_STOPPING: list = []  # the hosts of the main thread's graphs being stopped now
_MAIN = threading.main_thread().ident


def program_hub() -> Hub:
    """The hub of this thread's graphs (created on first use)."""
    hub = getattr(_LOCAL, "hub", None)
    if hub is None:
        hub = _LOCAL.hub = Hub()
        if threading.get_ident() == _MAIN:
            _CTRL_C.hub = hub
    return hub


# -- Ctrl-C -------------------------------------------------------------------------------------------------------
# Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread is: in a task or in
# the hub's loop, between two updates of the engine's state (a lock taken and not yet released, a
# batch taken off its queue and not yet written, a timer popped and not yet run). The stop that
# follows runs that same engine and could wait on it for ever, the workers alive. So while a graph
# of the main thread is live, this module's handler takes SIGINT: inside a call of this module it
# only asks the hub to raise KeyboardInterrupt between tasks (Hub.interrupt), where nothing is half
# done; the call then stops the graphs and raises it on.


class _CtrlC:
    hub: Hub | None = None  # the main thread's hub
    depth = 0  # calls of this module running in the main thread's main greenlet
    pending = False  # a Ctrl-C came while the graphs were stopping: raised when the outermost call ends


_CTRL_C = _CtrlC()


def _on_sigint(signum, frame) -> None:
    """The SIGINT handler while a graph of the main thread is live (see above)."""
    ctrl, hub = _CTRL_C, _CTRL_C.hub
    if _STOPPING:  # the stop waits for the workers to leave: they are killed instead
        ctrl.pending = True
        _kill_workers()
        return
    if not ctrl.depth or hub is None:  # the program's own code: Python's behaviour
        signal.default_int_handler(signum, frame)
    if hub.interrupted:  # a second one before the hub could take the first (a task computes): at once
        _kill_workers()
        raise KeyboardInterrupt
    hub.interrupt()


def _kill_workers() -> None:
    """SIGKILL the workers of the main thread's graphs (from the handler: no engine state touched)."""
    hub = _CTRL_C.hub
    for host in [g._host for g in list(_LIVE)] + list(_STOPPING):
        if host._hub is hub:
            try:
                host.signal_workers(signal.SIGKILL)
            except Exception:  # noqa: BLE001 - what is left is killed by the stop
                pass


def _take_ctrl_c() -> None:
    """A graph of the main thread starts: this module's handler replaces Python's own (not a program's)."""
    if threading.get_ident() == _MAIN and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def _give_back_ctrl_c() -> None:
    """No graph of the main thread is live any more: Python's handler again."""
    if threading.get_ident() != _MAIN or signal.getsignal(signal.SIGINT) is not _on_sigint:
        return
    if not any(g._host._hub is _CTRL_C.hub for g in _LIVE):
        signal.signal(signal.SIGINT, signal.default_int_handler)


class _Call:
    """``with _Call():`` around the code of this module that runs the engine: on the main thread
    (outside its tasks) Ctrl-C is taken by the hub meanwhile, and when the outermost call ends with
    one taken, every graph of the thread stops and KeyboardInterrupt goes on to the caller."""

    __slots__ = ("on",)

    def __enter__(self) -> "_Call":
        hub = _CTRL_C.hub
        self.on = hub is not None and threading.get_ident() == _MAIN and greenlet.getcurrent() is hub.main
        if self.on:
            _CTRL_C.depth += 1
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if not self.on:
            return False
        ctrl, hub = _CTRL_C, _CTRL_C.hub
        ctrl.depth -= 1
        interrupted = kind is not None and issubclass(kind, KeyboardInterrupt)
        if ctrl.depth or not (interrupted or ctrl.pending or hub.interrupted):
            return False
        ctrl.pending = hub.interrupted = False
        ctrl.depth += 1  # the stop is this module's code too
        try:
            _stop_all(failed_only=False)
        finally:
            ctrl.depth -= 1
            ctrl.pending = hub.interrupted = False
        if interrupted:
            return False
        raise KeyboardInterrupt


def block_on(fn):
    """Run ``fn()`` to its end and return its result (or raise its exception).

    In a plain program ``fn`` runs as a task of the thread's hub, so ``join``, ``sleep``,
    ``yield_now`` and the ports of :class:`Graph` suspend tasks instead of the thread: a ``recv``
    that waits lets a ``send`` task go on. Inside a task (a node, or ``block_on`` itself) it just calls
    ``fn()``. Anything other than an ``Exception`` escaping (Ctrl-C) stops every graph of the thread.
    """
    current = api.current_hub()
    if current is not None and current.in_task():
        return fn()
    hub = program_hub()
    box: dict = {}

    def task():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - raised in the caller
            box["error"] = exc

    with _Call():
        try:
            with api.using_hub(hub):
                hub.spawn(task)
                hub.run_until(lambda: bool(box))
        except BaseException:
            _stop_all(failed_only=False)
            raise
        error = box.get("error")
        if error is not None:
            _stop_all(failed_only=not isinstance(error, KeyboardInterrupt))
            raise error
        _stop_all(failed_only=True)
    return box.get("value")


def _stop_all(failed_only: bool) -> None:
    """Stop this thread's graphs (only those that failed, when ``failed_only``)."""
    for graph in list(_LIVE):
        if graph._host.hub_of_thread() and (graph._host.failures or not failed_only):
            graph._stop()


@atexit.register
def _stop_at_exit() -> None:
    main = threading.get_ident() == _MAIN
    if main:
        _CTRL_C.depth += 1  # a Ctrl-C meanwhile only hurries the stop: the program ends anyway
    try:
        for graph in list(_LIVE):
            graph._stop()
    finally:
        if main:
            _CTRL_C.depth -= 1
            _CTRL_C.pending = False


class Graph:
    """Builds an app from a config and starts it; see the module docstring for the contracts.

    ``config_path`` or ``config_str`` (exactly one; with neither, MegFlow's ``<plugin_path>/<dirname>.toml``),
    ``dynamic_path`` / ``dynamic_str``: the template variables as a TOML file / TOML text (the config is
    then rendered as a template), ``plugin_path``: the plugin directory or ``.py`` file (the program's
    own file in it is not imported again: :mod:`megflow_mp.plugins`), ``module_path``: extra import
    paths (a path or a list), ``dump``: write the graph's picture beside the config (``<config>.svg``;
    ``<main graph>.svg`` in the working directory for ``config_str``; ``.dot`` without graphviz).

    Raises ``ConfigError``/``PluginError`` before any process starts, ``AppFailed`` when a node
    cannot be built.
    """

    def __init__(self, config_path=None, config_str=None, dynamic_path=None, dynamic_str=None, plugin_path=None,
                 module_path=None, dump=False):
        if _worker.current_worker() is not None:
            raise RuntimeError("a Graph is built by a program, not inside a node's process")
        caller = sys._getframe(1).f_globals.get("__name__", "__main__")
        app, picture = _load(config_path, config_str, dynamic_path, dynamic_str, plugin_path, module_path, caller)
        if dump:
            from .dump import write_graph

            write_graph(app, picture if shutil.which("dot") else picture.with_suffix(".dot"))
        hub = program_hub()
        if hub.in_task():
            raise RuntimeError("build a Graph outside block_on (it starts processes and waits for them)")
        self._main = app.templates[app.main]
        self._host = ProgramHost(app, hub)
        self._senders: dict[str, Sender] = {}
        self._receivers: dict[str, Receiver] = {}
        self._closed = False
        _LIVE.add(self)
        _take_ctrl_c()
        with _Call():
            try:
                self._host.spawn()
                self._host.launch()
            except BaseException:
                self._stop()
                raise
            if self._host.failures:
                self._stop()
                raise AppFailed(self._host.failures)

    def inputs(self) -> list[str]:
        """The main graph's ``inputs``, in declaration order."""
        return list(self._main.inputs)

    def outputs(self) -> list[str]:
        """The main graph's ``outputs``, in declaration order."""
        return list(self._main.outputs)

    def input(self, name: str) -> "Sender":
        """The sending end of graph input ``name`` (ValueError if there is none)."""
        if name not in self._main.inputs:
            raise ValueError(f"graph {self._main.name!r} has no input {name!r}; inputs: {', '.join(self.inputs()) or 'none'}")
        return self._senders.setdefault(name, Sender(self, name, self._host.entry[name]))

    def output(self, name: str) -> "Receiver":
        """The receiving end of graph output ``name`` (ValueError if there is none)."""
        if name not in self._main.outputs:
            raise ValueError(f"graph {self._main.name!r} has no output {name!r}; outputs: "
                             f"{', '.join(self.outputs()) or 'none'}")
        return self._receivers.setdefault(name, Receiver(self, name, self._host.exits[name]))

    def close(self) -> None:
        """End every graph input (the nodes behind them see the end of the stream); idempotent."""
        if not self._closed:
            self._closed = True
            if self in _LIVE:
                with _Call():
                    self._host.channels.close([d for dests in self._host.entry.values() for d in dests])

    def wait(self) -> None:
        """Close the inputs, discard the results not received, wait until every node ended, then
        stop the workers and free the shared memory. Raises AppFailed when the app failed."""
        host = self._host
        if self in _LIVE:
            if host.hub_of_thread() is None:
                raise RuntimeError("call wait() outside block_on, in the thread that built the Graph")
            with _Call():
                self.close()
                for inbox in host.exits.values():
                    inbox.drop()
                try:
                    host.finish()
                finally:
                    self._stop()
        if host.failures:
            raise AppFailed(host.failures)

    def _stop(self) -> None:
        """Stop the workers now (what is queued is lost) and free everything; idempotent."""
        if self not in _LIVE:
            return
        _LIVE.discard(self)
        self._closed = True
        host = self._host
        main = host._hub is _CTRL_C.hub and threading.get_ident() == _MAIN
        if main:
            _STOPPING.append(host)  # a Ctrl-C meanwhile kills the workers (_on_sigint)
            if host._hub.interrupted:  # taken now: the stop's own waits must not raise it
                host._hub.interrupted = False
                _CTRL_C.pending = True
        try:
            host.stop()
        finally:
            if main:
                _STOPPING.remove(host)
                _give_back_ctrl_c()

    def _check(self) -> None:
        if self._host.failures:
            with _Call():
                self._stop_if_possible()
            raise AppFailed(self._host.failures)

    def _stop_if_possible(self) -> None:
        if self._host.hub_of_thread() is not None:
            self._stop()

    def _call(self, fn, *args):
        """``fn(*args)``, which may suspend: directly in a task, else in a task run from here."""
        host = self._host
        hub = host.hub
        if hub.in_task():
            return fn(*args)
        box: dict = {}

        def task():
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - raised below
                box["error"] = exc

        with _Call():
            try:
                hub.spawn(task)
                hub.run_until(lambda: bool(box))
            except BaseException:  # Ctrl-C while waiting: the graphs of this thread stop
                _stop_all(failed_only=False)
                raise
        if "error" in box:
            if host.failures:
                self._stop()
            raise box["error"]
        return box.get("value")


class Sender:
    """The program's end of one graph input (``graph.input(name)``)."""

    def __init__(self, graph: Graph, name: str, dests: list):
        self.graph, self.name, self.dests = graph, name, dests
        # an input that feeds a shared [[nodes]] entry: its results find their way back by this route
        self.route = next((d.route for d in dests if d.shared), None)
        self._send = graph._host.channels.sender(dests, self.route)

    def send(self, envelope: Envelope) -> None:
        """Deliver ``envelope`` to the input's nodes; blocks (a task: suspends) while the channel is
        full. The envelope is moved (using it afterwards raises). Raises ChannelClosed after
        ``close()``/``wait()``, AppFailed when the app failed."""
        if type(envelope) is not Envelope:
            raise TypeError(f"send() takes an Envelope, got {type(envelope).__name__}: wrap it with Envelope.pack(msg)")
        graph = self.graph
        graph._check()
        if graph._closed:
            raise ChannelClosed(f"graph input {self.name!r} is closed")
        host = graph._host
        if host.hub.in_task() or not host.has_credit(self.dests):
            return graph._call(self._send, envelope)
        with _Call():
            self._send(envelope)  # credit for every destination: nothing to wait for
            host.transport.flush_all()  # the hub runs only while the program waits: written now, not then

    def __repr__(self) -> str:
        return f"<graph input {self.name!r}>"


class Receiver:
    """The program's end of one graph output (``graph.output(name)``)."""

    def __init__(self, graph: Graph, name: str, inbox: Inbox):
        self.graph, self.name, self.inbox = graph, name, inbox

    def recv(self) -> Envelope | None:
        """The next result (arrays in it are shared-memory views); None once the output ended.
        Blocks (a task: suspends) while there is none. Raises AppFailed when the app failed."""
        inbox, graph = self.inbox, self.graph
        graph._check()
        if inbox.queue:
            with _Call():
                return Envelope.from_tuple(inbox.take())
        if inbox.closed:
            return None
        if graph not in _LIVE:
            raise ChannelClosed(f"graph output {self.name!r}: the graph was stopped")
        return graph._call(self._wait)

    def _wait(self) -> Envelope | None:
        inbox = self.inbox
        while not inbox.queue:
            if inbox.closed:
                return None
            inbox.wait()
        return Envelope.from_tuple(inbox.take())

    def __repr__(self) -> str:
        return f"<graph output {self.name!r}>"


def _load(config_path, config_str, dynamic_path, dynamic_str, plugin_path, module_path, caller: str):
    """``(App, picture path)`` from the Graph arguments (the files as ``megflow-mp run`` finds them:
    :mod:`megflow_mp.project`), with the node types of the calling module and ``__main__``."""
    from .project import load_app

    if (config_path is None) == (config_str is None) and not (config_path is None and plugin_path):
        raise MegFlowError("Graph needs exactly one of config_path and config_str")
    if dynamic_path is not None and dynamic_str is not None:
        raise MegFlowError("Graph takes dynamic_path or dynamic_str, not both")
    paths = [module_path] if isinstance(module_path, (str, os.PathLike)) else list(module_path or [])
    for extra in reversed([str(Path(p).resolve()) for p in paths]):  # what the plugins import from
        if extra not in sys.path:
            sys.path.insert(0, extra)
    app, path, _ = load_app("<config_str>" if config_str is not None else config_path,
                            [plugin_path] if plugin_path is not None else [], [os.fspath(p) for p in paths],
                            variables=_variables(dynamic_path, dynamic_str), text=config_str,
                            extra_modules=list(dict.fromkeys([caller, "__main__"])))
    picture = Path(f"{app.main}.svg") if config_str is not None else path.with_suffix(".svg")
    return app, picture


def _variables(dynamic_path, dynamic_str) -> dict | None:
    """The template variables from a TOML file or text (None: the config is no template)."""
    if dynamic_path is None and dynamic_str is None:
        return None
    from .config.loader import tomllib
    from .errors import ConfigError

    where = "<dynamic_str>" if dynamic_str is not None else os.fspath(dynamic_path)
    try:
        text = dynamic_str if dynamic_str is not None else Path(dynamic_path).read_text()
        return tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the template variables: {exc}", file=where) from None
