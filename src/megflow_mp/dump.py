"""Draw a built app (``megflow-mp dump -o graph.svg``): graphviz DOT text, rendered by ``dot``.

What is drawn, from the resolved :class:`~megflow_mp.graph.App` (nothing runs):

* each ``[[graphs]]`` template is a cluster (``graph NAME``, ``(main)`` or ``(unused)``) holding its
  nodes, labelled ``name``, type and ``xN`` when cloned; subgraph-typed nodes are drawn as
  components with a dotted edge to the cluster of each graph they instantiate;
* graph inputs and outputs are small arrows inside their cluster;
* shared top-level ``[[nodes]]`` are drawn outside every cluster (dashed when no graph uses them);
* each connection is an edge labelled ``out -> inp`` and ``cap N`` (a connection with more than two
  ends goes through a junction point); a dynamic binding (DynDemux ``out`` -> subgraph) is dashed
  and labelled ``per address``.

Contract: :func:`to_dot` is pure; :func:`write_graph` writes ``.dot`` itself and needs the ``dot``
binary (Debian package ``graphviz``) for ``.svg``, ``.png`` and ``.pdf``; every failure raises
:class:`~megflow_mp.errors.MegFlowError` with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import MegFlowError
from .graph import SHARED, App, Endpoint, Template

__all__ = ["to_dot", "write_graph"]

RENDERED = (".svg", ".png", ".pdf")


def _q(text: str) -> str:
    """A quoted DOT string; newlines become DOT line breaks."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _port(e: Endpoint) -> str:
    return e.port if e.tag is None else f"{e.port}:{e.tag}"


def _reachable(app: App) -> list[str]:
    """The graphs the main graph uses, main first (depth first, in declaration order)."""
    seen, stack = [], [app.main]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.append(name)
            stack.extend(reversed([t for s in app.templates[name].subs.values() for t in s.types]))
    return seen


class _Dot:
    def __init__(self, app: App):
        self.app = app
        self.lines = ["digraph megflow {", '  rankdir=LR; compound=true; fontname="Helvetica";',
                      '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];',
                      '  edge [fontname="Helvetica", fontsize=9];']
        self.clusters = {name: f"cluster_{i}" for i, name in enumerate(app.templates)}
        self.junctions = 0

    def emit(self, line: str, indent: int = 1) -> None:
        self.lines.append("  " * indent + line)

    def node_id(self, tpl: Template, name: str) -> str:
        return _q(f"{tpl.name}/{name}" if name in tpl.leaves or name in tpl.subs else f"{SHARED}/{name}")

    def shared_nodes(self) -> None:
        for node in self.app.config.nodes:
            used = node.name in self.app.shared
            label = f"{node.name}\n{node.ty}" + (f" x{node.cloned}" if node.cloned > 1 else "")
            style = "rounded,bold" if used else "rounded,dashed"
            self.emit(f'{_q(f"{SHARED}/{node.name}")} [label={_q(label + ("" if used else chr(10) + "(unused)"))}, '
                      f"style={_q(style)}];")

    def cluster(self, tpl: Template, used: bool) -> None:
        suffix = " (main)" if tpl.name == self.app.main else "" if used else " (unused)"
        self.emit(f"subgraph {self.clusters[tpl.name]} {{")
        self.emit(f"label={_q('graph ' + tpl.name + suffix)}; style={_q('rounded' if used else 'rounded,dashed')};", 2)
        self.emit(f'{_q(tpl.name + "#anchor")} [shape=point, style=invis, width=0];', 2)
        for name, d in tpl.leaves.items():
            label = f"{name}\n{d.ntype.name}" + (f" x{d.cloned}" if d.cloned > 1 else "")
            self.emit(f"{self.node_id(tpl, name)} [label={_q(label)}];", 2)
        for name, s in tpl.subs.items():
            self.emit(f"{self.node_id(tpl, name)} [label={_q(name + chr(10) + '|'.join(s.types))}, shape=component];", 2)
        for which, shape in (("inputs", "rarrow"), ("outputs", "rarrow")):
            for io in getattr(tpl, which):
                self.emit(f'{_q(f"{tpl.name}/{which}/{io}")} [label={_q(io)}, shape={shape}, style=solid, '
                          f"fontsize=9, height=0.3];", 2)
        self.emit("}")

    def edge(self, a: str, b: str, label: str, style: str = "solid", extra: str = "") -> None:
        self.emit(f"{a} -> {b} [label={_q(label)}, style={style}{extra}];")

    def connections(self, tpl: Template) -> None:
        for c in tpl.conns:
            ends = [(self.node_id(tpl, e.node), _port(e)) for e in c.senders + c.receivers]
            if len(ends) == 2:
                (a, pa), (b, pb) = ends
                self.edge(a, b, f"{pa} -> {pb}\ncap {c.cap}")
                continue
            self.junctions += 1
            j = _q(f"{tpl.name}#junction{self.junctions}")
            self.emit(f"{j} [shape=point, xlabel={_q(f'cap {c.cap}')}];")
            for e in c.senders:
                self.edge(self.node_id(tpl, e.node), j, _port(e), extra=", arrowhead=none")
            for e in c.receivers:
                self.edge(j, self.node_id(tpl, e.node), _port(e))
        for which in ("inputs", "outputs"):
            for io, (cap, eps) in getattr(tpl, which).items():
                ident = _q(f"{tpl.name}/{which}/{io}")
                for e in eps:
                    a, b = (ident, self.node_id(tpl, e.node)) if which == "inputs" else (self.node_id(tpl, e.node), ident)
                    self.edge(a, b, f"{_port(e)}\ncap {cap}")
        for (creator, port), b in tpl.dynamic.items():
            sub = self.node_id(tpl, b.sub)
            a, z = (self.node_id(tpl, creator), sub)
            if port in tpl.leaves[creator].ntype.dynamic_inputs:
                a, z = z, a
            self.edge(a, z, f"{port} -> {b.port}\nper address, cap {b.cap}", style="dashed")
        for name, s in tpl.subs.items():
            for graph in s.types:
                anchor = _q(graph + "#anchor")
                self.edge(self.node_id(tpl, name), anchor, "", style="dotted",
                          extra=f", lhead={self.clusters[graph]}, arrowhead=empty, constraint=false")

    def build(self) -> str:
        used = _reachable(self.app)
        order = used + [name for name in self.app.templates if name not in used]
        self.shared_nodes()
        for name in order:
            self.cluster(self.app.templates[name], name in used)
        for name in order:
            self.connections(self.app.templates[name])
        self.lines.append("}")
        return "\n".join(self.lines) + "\n"


def to_dot(app: App) -> str:
    """The DOT text of ``app`` (see the module docstring for what is drawn)."""
    return _Dot(app).build()


def write_graph(app: App, path: str | os.PathLike) -> None:
    """Write ``app``'s picture to ``path``: ``.dot`` as text, ``.svg``/``.png``/``.pdf`` through ``dot``.
    Raises MegFlowError for another suffix, a missing ``dot`` binary or a failed rendering."""
    path = Path(path)
    suffix = path.suffix.lower()
    text = to_dot(app)
    if suffix in (".dot", ".gv"):
        path.write_text(text)
        return
    if suffix not in RENDERED:
        raise MegFlowError(f"cannot draw to {str(path)!r}: use a .dot, {', '.join(RENDERED)} file")
    dot = shutil.which("dot")
    if dot is None:
        raise MegFlowError(f"drawing {path.name} needs graphviz's 'dot' program: apt-get install graphviz, "
                           f"or write a .dot file instead")
    done = subprocess.run([dot, f"-T{suffix[1:]}", "-o", str(path)], input=text.encode(), capture_output=True,
                          check=False)
    if done.returncode != 0:
        raise MegFlowError(f"dot failed to draw {str(path)!r} (exit {done.returncode}): "
                           f"{done.stderr.decode(errors='replace').strip()}")
