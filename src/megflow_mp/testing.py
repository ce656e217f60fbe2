"""Run one node in-process, without forking: the plugin author's test harness (as flow-rs's sandbox).

::

    from megflow_mp import Envelope
    from megflow_mp.func_op import map_def
    from megflow_mp.testing import run_node

    @map_def()
    def scale(x, context):
        return x * context.k

    out = run_node(scale, args={"k": 2}, inputs={"inp": [1, 2, Envelope.pack(3, {"partial_id": 9})]})
    assert [e.msg for e in out["out"]] == [2, 4, 6] and out["out"][2].partial_id == 9

Contract of :func:`run_node`:

* The node is built as the engine builds it: ``factory(name, args)`` with ``args["name"] = name``,
  then every declared port and every entry of ``resources`` set as attributes (resources as given,
  already built). ``exec()`` runs as a task on a real :class:`~megflow_mp.runtime.hub.Hub` (so
  ``sleep``, ``yield_now``, ``join`` and ``create_future`` work): once for a node without inputs,
  otherwise until every input has returned its end (``None``) once.
* ``inputs`` maps a port to its items: a list for a single port (``"inp"``), a list of lists for a
  list port or a dict of lists for a dict port (or one element by ``"inp:0"`` / ``"inp:key"``).
  An item is an :class:`Envelope` or a bare message (packed with ``Envelope.pack``). :data:`FLUSH`
  makes ``recv()`` return ``None`` once without ending the input (a shared node's end of one
  subgraph instance). Every input is already complete: ``recv`` never waits, ``batch_recv`` returns
  what is queued (up to ``n``, stopping at a flush marker).
* ``outputs`` gives the size of list output ports (``{"out": 3}``) or the keys of dict output ports
  (``{"out": ["a", "b"]}``); unnamed ones are empty, as when nothing is connected.
* Returns the sent envelopes by port: ``"out"`` for a single port, ``"out:0"`` / ``"out:key"`` for
  the elements of a list or dict port (each one present, possibly empty).
* Envelopes cross the ports by pickle, as between processes: the node gets copies of the inputs,
  the caller gets copies of what was sent, a message that cannot be pickled fails in ``send``, and
  ``send`` moves the envelope (using it afterwards raises :class:`~megflow_mp.envelope.EnvelopeMoved`).
* An exception raised by the constructor or ``exec`` propagates to the caller unchanged;
  :class:`TimeoutError` if the node has not finished after ``timeout`` seconds.
* Built-ins that need the engine (DynDemux creating subgraph instances) cannot run here.
"""

from __future__ import annotations

import pickle
import time
from collections import deque

from . import api
from .envelope import Envelope, mark_moved
from .errors import PluginError
from .registry import DICT, LIST, NodeType, Registry, builtin_registry, module_types, registered_types
from .errors import Cancelled
from .runtime.hub import Hub

__all__ = ["run_node", "FLUSH", "find_node_type"]

FLUSH = type("Flush", (), {"__repr__": lambda self: "FLUSH"})()  # a flush marker in an input list


def _copy(env: Envelope) -> Envelope:
    return Envelope.from_tuple(pickle.loads(pickle.dumps(env.to_tuple(), protocol=5)))


class _Input:
    """An input port whose senders have all sent their items and closed."""

    def __init__(self, name: str, items):
        self.name = name
        self.queue = deque(i if i is FLUSH else _copy(i if isinstance(i, Envelope) else Envelope.pack(i))
                           for i in items)
        self.eof_seen = False

    def recv(self) -> Envelope | None:
        if not self.queue:
            self.eof_seen = True
            return None
        item = self.queue.popleft()
        return None if item is FLUSH else item

    def batch_recv(self, n: int, timeout_ms: float | int = 0) -> tuple[list, bool]:
        out = []
        first = self.recv()
        if first is not None:
            out.append(first)
            while len(out) < n and self.queue and self.queue[0] is not FLUSH:
                out.append(self.queue.popleft())
        return out, self.is_closed()

    def is_closed(self) -> bool:
        return not self.queue


class _Output:
    def __init__(self, name: str, sink: list):
        self.name, self.sink = name, sink

    def send(self, envelope: Envelope) -> None:
        if not isinstance(envelope, Envelope):
            raise TypeError(f"send() takes an Envelope, got {type(envelope).__name__}: wrap it with Envelope.pack(msg)")
        self.sink.append(_copy(envelope))
        mark_moved(envelope)


def _closes_over(factory, fn) -> bool:
    """True when ``factory`` was made by a ``func_op`` decorator around ``fn``."""
    for cell in getattr(getattr(factory, "__init__", None), "__closure__", None) or ():
        try:
            if cell.cell_contents is fn:
                return True
        except ValueError:  # empty cell
            pass
    return False


def find_node_type(node, registry: Registry | None = None) -> NodeType:
    """The :class:`NodeType` of ``node``: a NodeType, a type name (looked up in ``registry``, else
    the built-ins, else every registered type), a ``@register`` class or a ``func_op`` function
    (looked up in ``registry``, else among the types its module registered). Raises PluginError."""
    if isinstance(node, NodeType):
        return node
    if isinstance(node, str):
        reg = registry or builtin_registry()
        if node in reg.nodes:
            return reg.nodes[node]
        found = [e for e in registered_types() if isinstance(e, NodeType) and e.name == node]
        if registry is None and len(found) == 1:
            return found[0]
        where = "in several modules: " + ", ".join(e.module for e in found) if found else "not registered"
        raise PluginError(f"node type {node!r} is {where}; pass the class or a Registry")
    pool = registry.nodes.values() if registry else module_types(getattr(node, "__module__", None))
    for t in pool:
        if isinstance(t, NodeType) and (t.factory is node or _closes_over(t.factory, node)):
            return t
    raise PluginError(f"{node!r} is not a registered node type: decorate it with @register (or a func_op "
                      f"decorator) and import its module")


def _split(ntype: NodeType, inputs: dict) -> dict:
    """``{port: items}`` (single) / ``{port: {tag: items}}`` (list, dict) from the accepted forms."""
    out: dict = {}
    for key, items in inputs.items():
        port, _, tag = key.partition(":")
        spec = ntype.input(port)
        if spec is None:
            raise ValueError(f"node type {ntype.name!r} has no input {port!r}; {ntype.port_names()}")
        if spec.kind not in (LIST, DICT):
            if tag:
                raise ValueError(f"input {port!r} of {ntype.name!r} is a single port: it takes no tag ({key!r})")
            out[port] = items
        elif tag:
            out.setdefault(port, {})[tag] = items
        elif isinstance(items, dict) != (spec.kind == DICT):
            raise ValueError(f"input {port!r} of {ntype.name!r} is a {spec.kind} port: give "
                             f"{'a dict of lists' if spec.kind == DICT else 'a list of lists'} or {port}:TAG keys")
        else:
            elems = items.items() if spec.kind == DICT else enumerate(items)
            out.setdefault(port, {}).update((str(t), v) for t, v in elems)
    return out


def _ports(specs, given: dict, make):
    """``{port name: port object}`` shaped as the plugin sees them (single, list or dict)."""
    ports = {}
    for p in specs:
        g = given.get(p.name)
        if p.kind == LIST:
            tags = g if isinstance(g, dict) else {str(i): () for i in range(g or 0)}
            size = max((int(t) + 1 for t in tags), default=0)
            ports[p.name] = [make(f"{p.name}:{i}", tags.get(str(i), ())) for i in range(size)]
        elif p.kind == DICT:
            ports[p.name] = {str(t): make(f"{p.name}:{t}", (g or {})[t] if isinstance(g, dict) else ())
                             for t in (g or ())}
        else:
            ports[p.name] = make(p.name, g or ())
    return ports


def _flat(ports: dict):
    for value in ports.values():
        yield from value if isinstance(value, list) else value.values() if isinstance(value, dict) else [value]


def run_node(node, args: dict | None = None, inputs: dict | None = None, resources: dict | None = None,
             name: str = "node", timeout: float = 10, outputs: dict | None = None,
             registry: Registry | None = None) -> dict[str, list[Envelope]]:
    """Build ``node`` and run it to its end on the given inputs; return what it sent, by port.
    See the module docstring for the forms of each argument."""
    ntype = find_node_type(node, registry)
    collected: dict[str, list] = {}
    ins = _ports(ntype.inputs, _split(ntype, inputs or {}), _Input)
    outs = _ports(ntype.outputs, outputs or {}, lambda n, _: _Output(n, collected.setdefault(n, [])))
    hub = Hub()
    state: dict = {"done": False, "error": None}
    try:
        obj = ntype.factory(name, {"name": name, **(args or {})})
        for attr, port in {**ins, **outs, **(resources or {})}.items():
            setattr(obj, attr, port)
        inboxes = list(_flat(ins))
        deadline = time.monotonic() + timeout

        def body():
            try:
                obj.exec()
                while inboxes and not all(i.eof_seen for i in inboxes):
                    if time.monotonic() > deadline:
                        left = ", ".join(i.name for i in inboxes if not i.eof_seen)
                        raise TimeoutError(f"node {name!r} did not read the end of its inputs {left} "
                                           f"within {timeout}s")
                    obj.exec()
            except Cancelled:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                state["error"] = exc
            state["done"] = True

        with api.using_hub(hub):
            task = hub.spawn(body)
        if not hub.run_until(lambda: state["done"], timeout=max(0.0, deadline - time.monotonic())):
            if task:  # started and parked: unwind it
                task.throw(Cancelled())
            raise TimeoutError(f"node {name!r} did not finish within {timeout}s")
        if state["error"] is not None:
            raise state["error"]
    finally:
        hub.close()
    return collected
