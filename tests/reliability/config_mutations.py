"""Hypothesis strategies that break the shipped configs (configs/) the ways people and tools do.

A case is one shipped config plus one to three mutations, applied either to its parsed document
(the template rendered with its defaults: wrong types, missing keys, unknown keys and ports,
cycles in connections, graphs and includes, huge and negative numbers, unicode and odd names) or to
its text (template errors, truncation, garbage, duplicated lines, bytes that are not UTF-8).
:func:`dumps` writes a document back as TOML (inline tables, so any document can be written).
"""

from __future__ import annotations

import copy
import json
import math

import jinja2
from hypothesis import strategies as st

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

MAIN = "fuzz_case.toml"  # the mutated config, written beside the shipped one (its includes resolve)
OTHER = "fuzz_other.toml"  # a second file, for include cycles
VARS = "fuzz_vars.toml"  # template variables, given with --dynamic
TEMPLATE_VARS = ["port", "host", "model", "device", "threads", "allow_dirs", "det_model", "cls_model", "max_batch",
                 "wait_time", "interval", "min_hits", "redis_host", "redis_port"]

ODD_NAMES = ["", " ", "a b", "a:b", "a:b:c:d", ":", "x" * 5000, "節点", "ノード", "\u202etxt", "a\tb", "名|字",
             "..", "/etc/passwd", "{{ x }}", "inp", "out", "main", "graphs", "-1", "None", "\U0001f600"]
ODD_NUMBERS = [0, -1, -(2**63), 2**63 - 1, 2**31, 10**9, 65536, 70000, -65535]
TEMPLATE_ERRORS = ["{{ undefined_variable }}", "{% if %}", "{{ 1 / 0 }}", "{{ x | no_such_filter }}",
                   "{% for x in 1 %}{{ x }}{% endfor %}", "{{", "{% endif %}", "{{ port | default(1) + 'a' }}",
                   "{% include 'nothing.toml' %}", "{{ ''.__class__.__mro__ }}", "{% raw %}",
                   "{{ range(10**9) | list | length }}", "{% set x = 1 %}{{ x.y.z }}"]
GARBAGE = ["\x00", "[[", "]]", "=", '"', "'''", "[graphs]", "key = ", "= value", "\\", "\ufeff", "\r",
           "[[graphs.nodes]]",
           "a.b.c = 1", "main = 1", "inf", "nan", "0x", "1979-05-27T07:32:00Z"]


def render_defaults(text: str) -> str:
    """The template rendered as the loader would with no variables given (``default(...)`` applies)."""
    if "{{" not in text and "{%" not in text:
        return text
    return jinja2.Environment(keep_trailing_newline=True).from_string(text).render()


def _key(k) -> str:
    return json.dumps(str(k), ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _key(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    return _key(repr(v))


def dumps(doc: dict) -> str:
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in doc.items())


def locations(doc, prefix=()) -> list[tuple]:
    """Every (container, key) inside ``doc``, depth first: what a mutation may delete or replace."""
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        out.append((doc, k))
        out += locations(v, prefix + (k,))
    return out


def tables(doc) -> list[dict]:
    return [doc] + [v for c, k in locations(doc) for v in [c[k]] if isinstance(v, dict)]


scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.sampled_from(ODD_NUMBERS), st.floats(), st.booleans(),
    st.text(max_size=12), st.sampled_from(ODD_NAMES))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)


def _nodes(doc) -> list[dict]:
    found = list(doc.get("nodes", [])) if isinstance(doc.get("nodes"), list) else []
    for g in doc.get("graphs", []) if isinstance(doc.get("graphs"), list) else []:
        if isinstance(g, dict) and isinstance(g.get("nodes"), list):
            found += g["nodes"]
    return [n for n in found if isinstance(n, dict)]


def _connections(doc) -> list[dict]:
    out = []
    for g in doc.get("graphs", []) if isinstance(doc.get("graphs"), list) else []:
        if isinstance(g, dict):
            for key in ("connections", "inputs", "outputs"):
                if isinstance(g.get(key), list):
                    out += [c for c in g[key] if isinstance(c, dict)]
    return out


@st.composite
def structural(draw, doc: dict) -> tuple[dict, dict, str]:
    """One mutation of the parsed document; returns (document, extra files, description)."""
    doc = copy.deepcopy(doc)
    extra: dict[str, str] = {}
    kind = draw(st.sampled_from(["delete", "replace", "add_key", "rename_node", "port", "cycle", "nesting",
                                 "number", "include", "main", "duplicate", "node_type"]))
    locs = locations(doc)
    nodes, conns = _nodes(doc), _connections(doc)
    graphs = [g for g in doc.get("graphs", []) if isinstance(g, dict)] if isinstance(doc.get("graphs"), list) else []
    if kind == "delete" and locs:
        container, key = locs[draw(st.integers(0, len(locs) - 1))]
        del container[key]
        return doc, extra, f"delete {key!r}"
    if kind == "replace" and locs:
        container, key = locs[draw(st.integers(0, len(locs) - 1))]
        container[key] = draw(values)
        return doc, extra, f"replace {key!r} with {container[key]!r:.60}"
    if kind == "add_key":
        table = draw(st.sampled_from(tables(doc)))
        name = draw(st.one_of(st.text(max_size=10), st.sampled_from(["cap", "ports", "ty", "name", "cloned", "res",
                                                                     "include", "main", "restart", "graphs"])))
        table[name] = draw(values)
        return doc, extra, f"add {name!r:.40}"
    if kind == "rename_node" and nodes:
        node = draw(st.sampled_from(nodes))
        node["name"] = draw(st.one_of(st.sampled_from(ODD_NAMES), st.text(max_size=20)))
        return doc, extra, f"rename a node to {node['name']!r:.40}"
    if kind == "port" and conns:
        conn = draw(st.sampled_from(conns))
        ports = conn.get("ports")
        if isinstance(ports, list) and ports:
            i = draw(st.integers(0, len(ports) - 1))
            node = str(ports[i]).split(":")[0]
            ports[i] = draw(st.sampled_from([f"{node}:nope", "ghost:inp", f"{node}:inp:x", f"{node}:out:[]", f"{node}",
                                             f"{node}::", "a:b:c:d", f"{node}:inp:{{}}", f"{node}:out:99999999999",
                                             " ", ""]))
            return doc, extra, f"port {ports[i]!r}"
    if kind == "cycle" and graphs:
        g = draw(st.sampled_from(graphs))
        listed = g.get("nodes") if isinstance(g.get("nodes"), list) else []  # an earlier mutation may have replaced it
        names = [n.get("name") for n in listed if isinstance(n, dict)] or ["x"]
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        conn = {"cap": 4, "ports": [f"{a}:out", f"{b}:inp"]}
        back = {"cap": 4, "ports": [f"{b}:out", f"{a}:inp"]}
        if isinstance(g.get("connections"), list):
            g["connections"] += [conn, back]
        else:
            g["connections"] = [conn, back]
        return doc, extra, f"connections {a} <-> {b}"
    if kind == "nesting" and graphs:
        g = draw(st.sampled_from(graphs))
        other = draw(st.sampled_from(graphs))
        new = {"name": draw(st.sampled_from(["loop", "节", "x"])), "ty": str(other.get("name"))}
        if isinstance(g.get("nodes"), list):
            g["nodes"].append(new)
        if other is not g and isinstance(other.get("nodes"), list):
            other["nodes"].append({"name": "back", "ty": str(g.get("name"))})
        return doc, extra, f"graph {g.get('name')!r} contains {other.get('name')!r} and back"
    if kind == "number":
        targets = [(c, "cap") for c in conns] + [(n, "cloned") for n in nodes] + [(n, k) for n in nodes for k in
                                                                                    ("port", "timeout", "max_body",
                                                                                     "restart", "max_inflight")]
        table, key = draw(st.sampled_from(targets)) if targets else (doc, "cap")
        table[key] = draw(st.one_of(st.sampled_from(ODD_NUMBERS + [1.5, -0.0, math.inf, math.nan, "16", True]),
                                    st.integers(-(2**63), 2**63 - 1)))
        return doc, extra, f"{key} = {table[key]!r}"
    if kind == "include":
        choice = draw(st.sampled_from(["self", "cycle", "missing", "directory", "list", "number", "devnull",
                                       "absolute", "dots", "endless"]))
        inc = {"self": [MAIN], "cycle": [OTHER], "missing": ["no_such.toml"], "directory": ["."],
               "list": [["a"]], "number": 7, "devnull": ["/dev/null"], "absolute": ["/etc/hostname"],
               "dots": ["../../../../../../../../etc/hostname"], "endless": ["/dev/zero"]}[choice]
        if choice == "cycle":
            extra[OTHER] = f'include = ["{MAIN}"]\n'
        doc["include"] = inc
        return doc, extra, f"include {choice}"
    if kind == "main":
        doc["main"] = draw(st.one_of(st.sampled_from([g.get("name") for g in graphs] or ["x"]),
                                     st.sampled_from(ODD_NAMES), values))
        return doc, extra, f"main = {doc['main']!r:.40}"
    if kind == "duplicate" and (graphs or nodes):
        pool = graphs + nodes
        item = draw(st.sampled_from(pool))
        for lst in [doc.get("graphs")] + [g.get("nodes") for g in graphs] + [doc.get("nodes")]:
            if isinstance(lst, list) and any(x is item for x in lst):
                lst.append(copy.deepcopy(item))
                break
        return doc, extra, f"duplicate {item.get('name')!r}"
    if kind == "node_type" and nodes:
        node = draw(st.sampled_from(nodes))
        node["ty"] = draw(st.one_of(st.sampled_from(["Nope", "", "Transform|", "|", "a|b|c", "ImageServer",
                                                     "VideoServer", "DynDemux", "NoopProducer"]
                                                    + [str(g.get("name")) for g in graphs]),
                                    st.text(max_size=10)))
        return doc, extra, f"ty = {node['ty']!r:.40}"
    return doc, extra, "unchanged"


@st.composite
def textual(draw, text: str) -> tuple[str | bytes, str]:
    """One mutation of the config's text (a template): returns (text or bytes, description)."""
    lines = text.splitlines(keepends=True) or [""]
    kind = draw(st.sampled_from(["template", "truncate", "garbage", "dup_line", "drop_line", "bytes"]))
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "template":
        snippet = draw(st.sampled_from(TEMPLATE_ERRORS))
        lines.insert(i, snippet + "\n")
        return "".join(lines), f"template line {i + 1}: {snippet}"
    if kind == "truncate":
        cut = draw(st.integers(0, len(text)))
        return text[:cut], f"truncated at {cut}"
    if kind == "garbage":
        pos = draw(st.integers(0, len(text)))
        junk = draw(st.one_of(st.sampled_from(GARBAGE), st.text(min_size=1, max_size=8)))
        return text[:pos] + junk + text[pos:], f"{junk!r} inserted at {pos}"
    if kind == "dup_line":
        lines.insert(i, lines[i])
        return "".join(lines), f"line {i + 1} twice"
    if kind == "drop_line":
        del lines[i]
        return "".join(lines), f"line {i + 1} dropped"
    pos = draw(st.integers(0, len(text)))
    raw = text.encode()
    return raw[:pos] + b"\xff\xfe\xc3" + raw[pos:], f"bytes that are not UTF-8 at {pos}"


@st.composite
def cases(draw, seeds: list[tuple[str, str]]) -> tuple[int, str | bytes, dict, list[str]]:
    """(seed index, the mutated config, extra files, what was done) for ``seeds`` = [(name, text)]."""
    index = draw(st.integers(0, len(seeds) - 1))
    _, text = seeds[index]
    if "{{" in text and draw(st.integers(0, 5)) == 0:  # a templated config, given odd variables
        variables = draw(st.dictionaries(st.sampled_from(TEMPLATE_VARS), values, min_size=1, max_size=4))
        return index, text, {VARS: dumps(variables)}, [f"--dynamic {variables!r:.80}"]
    if draw(st.integers(0, 3)) == 0:  # a quarter of the cases break the text, the rest the document
        out, what = draw(textual(text))
        return index, out, {}, [what]
    doc = tomllib.loads(render_defaults(text))
    extra, done = {}, []
    for _ in range(draw(st.integers(1, 3))):
        doc, more, what = draw(structural(doc))
        extra.update(more)
        done.append(what)
    return index, dumps(doc), extra, done
