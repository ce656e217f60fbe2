"""Node types from plain functions (MegFlow's ``func_op``): ``map_def``, ``reduce_def``,
``sink_def``, ``source_def``, ``batch_def``.

Each is used as ``@map_def()`` / ``@map_def(name="X", exclusive=False)`` on a function; the node
type's name is the function name in CamelCase (``summation`` -> ``Summation``). If the function has
a ``context`` parameter it receives the node's args as attributes (``context.n``).
"""

from __future__ import annotations

import inspect
import re
from functools import partial

from .envelope import Envelope
from .registry import register


class Context:
    """The node's args as attributes (mutable: a function may keep state in it)."""

    def __init__(self, **entries):
        self.__dict__.update(entries)


def camel_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"_+", name) if part)


def _node_def(inputs, outputs, body):
    def decorator(name=None, exclusive=False):
        def wrap(func):
            type_name = camel_case(name or func.__name__)
            wants_context = "context" in inspect.signature(func).parameters

            class Node:
                def __init__(self, node_name, args):
                    self.context = Context(**args)
                    self.impl = partial(func, context=self.context) if wants_context else func

                def exec(self):
                    body(self, self.impl)

            Node.__name__ = Node.__qualname__ = type_name
            Node.__module__ = func.__module__
            register(name=type_name, inputs=inputs, outputs=outputs, exclusive=exclusive)(Node)
            return func

        return wrap

    return decorator


def _map(self, func):
    envelope = self.inp.recv()
    if envelope is None:
        return
    envelope.msg = func(envelope.msg)
    self.out.send(envelope)


def _reduce(self, func):
    envelopes = [port.recv() for port in self.inp]
    if all(e is None for e in envelopes):
        return
    if any(e is None for e in envelopes):
        raise RuntimeError("reduce node: one input ended before the others")
    self.out.send(envelopes[0].repack(func([e.msg for e in envelopes])))


def _sink(self, func):
    envelope = self.inp.recv()
    if envelope is not None:
        func(envelope.msg)


def _source(self, func):
    for i, msg in enumerate(func()):
        self.out.send(Envelope.pack(msg, info={"partial_id": i}))


def _batch(self, func):
    envelopes, _closed = self.inp.batch_recv(self.context.batch_size, self.context.timeout)
    if not envelopes:
        return
    func([e.msg for e in envelopes])
    for envelope in envelopes:
        self.out.send(envelope)


map_def = _node_def(["inp"], ["out"], _map)
reduce_def = _node_def(["inp:[]"], ["out"], _reduce)
sink_def = _node_def(["inp"], [], _sink)
source_def = _node_def([], ["out"], _source)
batch_def = _node_def(["inp"], ["out"], _batch)

__all__ = ["map_def", "reduce_def", "sink_def", "source_def", "batch_def", "Context"]
