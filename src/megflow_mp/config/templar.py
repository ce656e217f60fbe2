"""MegFlow's config template language: the Rust ``templar`` crate, re-implemented without ``eval``.

:func:`render` turns a template and its variables into text, or raises one ``ConfigError`` whose
message names the line (``template syntax error at line 3: ...``). :func:`detect_dialect` tells a
templar file from a jinja2 one. What is accepted, as templar writes it:

* ``{{ expr }}`` prints a value; ``{{ name = expr }}`` assigns and prints nothing; ``{# ... #}``
  comments; ``-`` inside any tag (``{{-``, ``-%}``) removes the whitespace on that side.
* ``{% for x in expr %} ... {% end for %}`` (a table loops as ``x.key`` / ``x.value`` by sorted key;
  a single value loops once), ``{% if c %} ... {% else if c %} ... {% else %} ... {% end if %}``,
  ``{% scope %} ... {% end scope %}``. A loop or scope keeps its assignments to itself.
* literals: integers, ``'s'`` ``"s"`` and backtick-quoted text, ``true``/``yes``, ``false``/``no``,
  ``null``/``nil``, ``[a, b]``, ``{'k': v}``; variables ``a.b``, ``a['k']`` and (beyond templar)
  ``a[0]``; ``( )``.
* operators ``+ - * / %`` (integers, truncating division), ``~`` (joins text), ``== != < >`` (and,
  beyond templar, whose grammar tries ``<`` before ``<=``, ``<= >=``), ``&& ||`` (booleans only),
  applied strictly LEFT TO RIGHT as templar does: ``1 + 2 * 3`` is 9.
* filters ``require default length exists lower upper trim split join index string key replace
  escape_html e``; functions ``range(n)``, ``range([start, end(, step)])`` (MegFlow's) and ``env(name)``.

Rejected with a clear error where templar would print something surprising or fail later: an
undefined variable (unless filtered by ``default``/``exists``), an operator after an assignment
(templar assigns first: write ``x = (1 + 2)``), a non-boolean ``if`` condition, arithmetic on
non-integers, reading a field of a non-table, and the file/shell/JSON/YAML/base64 extensions that
MegFlow's build of templar leaves out.
"""

from __future__ import annotations

import math
import os
import re
from decimal import Decimal
from typing import Any, Mapping

from ..errors import ConfigError

__all__ = ["render", "detect_dialect"]

_WS = " \t\r\n"
_I64 = (-(2**63), 2**63 - 1)
_KEYWORDS = {"true": True, "yes": True, "false": False, "no": False, "null": None, "nil": None}
_TWO_CHAR = ("&&", "||", "==", "!=", ">=", "<=")
_BINARY = {"+", "-", "*", "/", "%", "~", "==", "!=", "<", ">", "<=", ">=", "&&", "||", "="}
_CLOSERS = {"{{": "}}", "{%": "%}", "{#": "#}"}
_JINJA_TAGS = {"endfor", "endif", "elif", "set", "macro", "endmacro", "block", "endblock", "raw",
               "filter", "with", "call", "extends", "import", "include", "from"}
_LEFT_OUT = {
    "file": "reads files", "script": "runs shell commands", "command": "runs shell commands",
    "json": "needs templar's json extension, which MegFlow builds without",
    "yaml": "needs templar's yaml extension, which MegFlow builds without",
    "yml": "needs templar's yaml extension, which MegFlow builds without",
    "base64": "needs templar's base64 extension, which MegFlow builds without",
}
_TEMPLAR_MARK = re.compile(r"\{%-?\s*(?:end\s+(?:for|if|scope)|else\s+if|scope)\b"
                           r"|\{\{-?\s*(?:[A-Za-z]\w*|'[^'\n]*'|\"[^\"\n]*\")\s*=(?!=)")
_JINJA_MARK = re.compile(r"\{%-?\s*(?:" + "|".join(sorted(_JINJA_TAGS)) + r")\b")
_DIALECT_NOTE = re.compile(r"\{#-?\s*dialect:\s*(templar|jinja)\s*-?#\}")


class _Fail(Exception):
    """A template failure at ``line``; ``kind`` picks the message head (syntax, undefined, template)."""

    def __init__(self, kind: str, message: str, line: int):
        super().__init__(message)
        self.kind, self.message, self.line = kind, message, line


class _Unset:
    """What an assignment yields: prints as nothing."""

    def __repr__(self) -> str:
        return "nothing"


_UNSET = _Unset()


class _Missing:
    """An undefined variable: an error wherever used, except as the input of ``default``/``exists``."""

    def __init__(self, name: str):
        self.name = name


def detect_dialect(text: str, file: str) -> str | None:
    """``"templar"``, ``"jinja"``, or ``None`` when nothing in ``text`` tells them apart.

    A ``{# dialect: templar #}`` / ``{# dialect: jinja #}`` comment decides. Otherwise templar is
    marked by ``{% end for|if|scope %}``, ``{% else if %}``, ``{% scope %}`` or an assignment
    ``{{ name = ... }}``; jinja by a jinja-only tag (``{% endfor %}``, ``{% elif %}``, ``{% set %}``...).
    Marks of both kinds raise ``ConfigError`` naming one line of each.
    """
    note = _DIALECT_NOTE.search(text)
    if note:
        return note.group(1)
    templar, jinja = _TEMPLAR_MARK.search(text), _JINJA_MARK.search(text)
    if templar and jinja:
        lines = [text.count("\n", 0, m.start()) + 1 for m in (templar, jinja)]
        raise ConfigError(f"template mixes templar (line {lines[0]}: {templar.group(0)!r}) and jinja2 "
                          f"(line {lines[1]}: {jinja.group(0)!r}) syntax", file=file)
    return "templar" if templar else "jinja" if jinja else None


def render(text: str, variables: Mapping[str, Any], file: str) -> str:
    """Render templar ``text`` with ``variables`` (e.g. a ``--dynamic`` TOML file's tables).

    Returns the rendered text; raises ``ConfigError(file=file)`` whose message starts with
    ``template syntax error at line N``, ``undefined template variable at line N`` or
    ``template error at line N``. ``variables`` is not modified.
    """
    try:
        body = _Parser(text).parse()
        return _Renderer(dict(variables)).block(body)
    except _Fail as exc:
        head = {"syntax": "template syntax error", "undefined": "undefined template variable"}
        raise ConfigError(f"{head.get(exc.kind, 'template error')} at line {exc.line}: {exc.message}",
                          file=file) from None
    except RecursionError:
        raise ConfigError("template error: nested too deeply", file=file) from None


# --- parsing ---------------------------------------------------------------------------------------


class _Parser:
    """Text -> list of items: ``str`` | ``("out", expr)`` | ``("for", name, expr, body, line)`` |
    ``("if", [(cond, body)], else_body)`` | ``("scope", body)``; an expression is a tuple
    ``(kind, line, ...)``."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0
        self._counted, self._lines = 0, 1  # newlines before offset _counted, plus one

    def line(self, pos: int | None = None) -> int:
        """1-based line of ``pos`` (default: the current position); positions only move forward."""
        pos = self.pos if pos is None else pos
        self._lines += self.text.count("\n", self._counted, pos)
        self._counted = pos
        return self._lines

    def parse(self) -> list:
        self.items = self._flat()
        self.i = 0
        body, end = self._block()
        if end is not None:
            words = " ".join(str(token[1]) for token in end[1].tokens)
            raise _Fail("syntax", f"'{{% {words} %}}' without an opening tag", end[2])
        return body

    def _flat(self) -> list:
        """Texts and tags in order, whitespace control applied; comments dropped."""
        items: list = []
        strip_next = False
        while self.pos < len(self.text):
            start = min((p for p in (self.text.find(o, self.pos) for o in _CLOSERS) if p >= 0), default=-1)
            chunk = self.text[self.pos:start if start >= 0 else len(self.text)]
            if strip_next:
                chunk = chunk.lstrip(_WS)
            items.append(chunk)
            if start < 0:
                break
            opener, line = self.text[start:start + 2], self.line(start)
            self.pos = start + 2
            if self.text.startswith("-", self.pos):
                items[-1] = items[-1].rstrip(_WS)
                self.pos += 1
            if opener == "{#":
                end = self.text.find("#}", self.pos)
                if end < 0:
                    raise _Fail("syntax", "comment '{#' is never closed", line)
                strip_next = self.text[end - 1] == "-" and end - 1 >= self.pos
                self.pos = end + 2
                continue
            tokens, strip_next = self._tokens(_CLOSERS[opener], line)
            items.append(("expr" if opener == "{{" else "ctrl", tokens, line))
        return [item for item in items if item != ""]

    def _tokens(self, closer: str, line: int) -> tuple[list, bool]:
        """Lex up to ``closer`` (or ``-closer``) outside brackets; returns tokens and the strip flag."""
        text, tokens, depth = self.text, [], 0
        while True:
            while self.pos < len(text) and text[self.pos] in _WS:
                self.pos += 1
            if self.pos >= len(text):
                raise _Fail("syntax", f"tag is never closed with '{closer}'", line)
            at, ch = self.line(), text[self.pos]
            if depth == 0 and text.startswith(closer, self.pos):
                self.pos += 2
                return tokens, False
            if depth == 0 and text.startswith("-" + closer, self.pos):
                self.pos += 3
                return tokens, True
            if ch in "'\"`":
                end = self.pos + 1
                while end < len(text) and text[end] != ch:
                    end += 2 if text[end] == "\\" and text[end + 1:end + 2] == ch else 1
                if end >= len(text):
                    raise _Fail("syntax", "string is never closed", at)
                tokens.append(("str", text[self.pos + 1:end].replace("\\" + ch, ch), at))
                self.pos = end + 1
            elif ch.isdigit():
                m = re.compile(r"\d+(\.\d+)?").match(text, self.pos)
                if m.group(1):
                    raise _Fail("syntax", f"{m.group(0)}: templar numbers are integers", at)
                tokens.append(("num", int(m.group(0)), at))
                self.pos = m.end()
            elif ch.isascii() and ch.isalpha():
                m = re.compile(r"[A-Za-z][A-Za-z0-9_]*").match(text, self.pos)
                tokens.append(("name", m.group(0), at))
                self.pos = m.end()
            else:
                sym = text[self.pos:self.pos + 2]
                sym = sym if sym in _TWO_CHAR else ch
                if sym not in _BINARY and sym not in "()[]{},:.|":
                    raise _Fail("syntax", f"unexpected {sym!r}", at)
                depth += (sym in "([{") - (sym in ")]}")
                tokens.append(("sym", sym, at))
                self.pos += len(sym)

    def _block(self) -> tuple[list, tuple | None]:
        """Items up to a closing control tag (``end``/``else``), returned as the second value."""
        body: list = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if isinstance(item, str):
                body.append(item)
            elif item[0] == "expr":
                body.append(("out", _Expr(item[1], item[2]).whole()))
            else:
                tag = _Expr(item[1], item[2])
                word = tag.word()
                if word in ("end", "else"):
                    return body, (word, tag, item[2])
                body.append(self._control(word, tag, item[2]))
        return body, None

    def _control(self, word: str, tag: "_Expr", line: int) -> tuple:
        if word == "for":
            name = tag.word()
            if tag.word() != "in":
                raise _Fail("syntax", "expected '{% for NAME in EXPRESSION %}'", line)
            body = self._closed("for", line)
            return ("for", name, tag.whole(), body, line)
        if word == "if":
            branches, cond = [], tag.whole()
            while True:
                body, (word, end_tag, at) = self._closed_any("if", line)
                branches.append((cond, body))
                if word == "end":
                    _expect_end(end_tag, "if", at)
                    return ("if", branches, [])
                if end_tag.done():
                    body = self._closed("if", line)
                    return ("if", branches, body)
                if end_tag.word() != "if":
                    raise _Fail("syntax", "expected '{% else %}' or '{% else if CONDITION %}'", at)
                cond = end_tag.whole()
        if word == "scope":
            tag.whole(allow_empty=True)
            return ("scope", self._closed("scope", line))
        hint = f" (templar writes '{{% end {word[3:]} %}}')" if word in ("endfor", "endif", "endscope") else ""
        hint = " (templar writes '{% else if ... %}')" if word == "elif" else hint
        hint = " (templar assigns with '{{ name = value }}')" if word == "set" else hint
        raise _Fail("syntax", f"unknown tag '{{% {word} %}}'{hint}", line)

    def _closed_any(self, what: str, line: int) -> tuple[list, tuple]:
        body, end = self._block()
        if end is None:
            raise _Fail("syntax", f"'{{% {what} %}}' is never closed with '{{% end {what} %}}'", line)
        return body, end

    def _closed(self, what: str, line: int) -> list:
        body, (word, tag, at) = self._closed_any(what, line)
        if word != "end":
            raise _Fail("syntax", f"'{{% else %}}' inside '{{% {what} %}}'", at)
        _expect_end(tag, what, at)
        return body


def _expect_end(tag: "_Expr", what: str, line: int) -> None:
    if tag.done() or tag.word() != what or not tag.done():
        raise _Fail("syntax", f"expected '{{% end {what} %}}'", line)


class _Expr:
    """Recursive descent over one tag's tokens; no operator precedence (templar folds left)."""

    def __init__(self, tokens: list, line: int):
        self.tokens, self.i, self.line = tokens, 0, line

    def done(self) -> bool:
        return self.i >= len(self.tokens)

    def peek(self, symbol: str | None = None) -> bool:
        """Is there a next token (``symbol`` given: is it that operator or bracket, not a string)?"""
        return not self.done() and (symbol is None or self.tokens[self.i][:2] == ("sym", symbol))

    def take(self, symbol: str | None = None) -> tuple:
        if self.done():
            raise _Fail("syntax", f"expected {symbol!r}" if symbol else "unexpected end of tag", self.line)
        tok = self.tokens[self.i]
        if symbol is not None and tok[:2] != ("sym", symbol):
            raise _Fail("syntax", f"expected {symbol!r}, got {tok[1]!r}", tok[2])
        self.i += 1
        return tok

    def word(self) -> str:
        tok = self.take()
        if tok[0] != "name":
            raise _Fail("syntax", f"expected a name, got {tok[1]!r}", tok[2])
        return tok[1]

    def whole(self, allow_empty: bool = False) -> tuple | None:
        if allow_empty and self.done():
            return None
        expr = self.expr()
        if not self.done():
            raise _Fail("syntax", f"unexpected {self.tokens[self.i][1]!r}", self.tokens[self.i][2])
        return expr

    def expr(self) -> tuple:
        node = self.primary()
        while any(self.peek(op) for op in _BINARY | {"|"}):
            _, op, line = self.take()
            if node[0] == "set":
                raise _Fail("syntax", f"{op!r} after an assignment: templar assigns first, then applies "
                            f"{op!r} to nothing; put the value in parentheses: name = ( ... )", line)
            if op == "|":
                name = self.word()
                node = ("filter", line, name, node, self.args() if self.peek("(") else None)
            elif op == "=":
                if node[0] not in ("var", "lit") or (node[0] == "var" and len(node[2]) > 1) \
                        or (node[0] == "lit" and not isinstance(node[2], str)):
                    raise _Fail("syntax", "only a name can be assigned to ('name = value')", line)
                node = ("set", line, node[2][0] if node[0] == "var" else node[2], self.primary())
            else:
                node = ("op", line, op, node, self.primary())
        return node

    def args(self) -> tuple | None:
        """``( a, b )`` as templar passes it: no args -> None, one -> that, more -> a list."""
        line = self.take("(")[2]
        items = self.items(")")
        return None if not items else items[0] if len(items) == 1 else ("list", line, items)

    def items(self, closer: str) -> list:
        items = []
        while not self.peek(closer):
            items.append(self.expr())
            if not self.peek(closer):
                self.take(",")
        self.take(closer)
        return items

    def primary(self) -> tuple:
        kind, value, line = self.take()
        if kind in ("num", "str"):
            return ("lit", line, value)
        if kind == "name":
            if self.peek("("):
                if value not in ("range", "env"):
                    why = _LEFT_OUT.get(value, "is not a templar function")
                    raise _Fail("syntax", f"function '{value}' {why}", line)
                return ("call", line, value, self.args())
            if value in _KEYWORDS:
                return ("lit", line, _KEYWORDS[value])
            path: list = [value]
            while self.peek(".") or self.peek("["):
                if self.take()[1] == ".":
                    path.append(self.word())
                else:
                    path.append(self.expr())
                    self.take("]")
            return ("var", line, path)
        if value == "-" and kind == "sym" and self.peek() and self.tokens[self.i][0] == "num":
            return ("lit", line, -self.take()[1])
        if value == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if value == "[":
            return ("list", line, self.items("]"))
        if value == "{":
            pairs = []
            while not self.peek("}"):
                key = self.primary()
                if key[0] != "lit":
                    raise _Fail("syntax", "a table key must be a literal", key[1])
                self.take(":")
                pairs.append((key[2], self.expr()))
                if not self.peek("}"):
                    self.take(",")
            self.take("}")
            return ("map", line, pairs)
        raise _Fail("syntax", f"unexpected {value!r}", line)


# --- rendering -------------------------------------------------------------------------------------


class _Renderer:
    """Evaluates parsed items over a stack of scopes (innermost last); assignments go innermost."""

    def __init__(self, variables: dict[str, Any]):
        self.scopes = [variables]

    def block(self, body: list) -> str:
        out = []
        for item in body:
            if isinstance(item, str):
                out.append(item)
            elif item[0] == "out":
                out.append(_text(self.value(item[1]), item[1][1], top=True))
            elif item[0] == "for":
                out.append(self.loop(*item[1:]))
            elif item[0] == "if":
                out.append(self.choose(item[1], item[2]))
            else:
                out.append(self.scoped(lambda: self.block(item[1])))
        return "".join(out)

    def scoped(self, run) -> str:
        self.scopes.append({})
        try:
            return run()
        finally:
            self.scopes.pop()

    def loop(self, name: str, expr: tuple, body: list, line: int) -> str:
        seq = self.value(expr)
        if isinstance(seq, dict):
            seq = [{"key": k, "value": seq[k]} for k in sorted(seq, key=_order)]
        elif not isinstance(seq, (list, tuple)):
            seq = [seq]  # templar loops once over a single value

        def run() -> str:
            out = []
            for item in seq:
                self.scopes[-1][name] = item
                out.append(self.block(body))
            return "".join(out)

        return self.scoped(run)

    def choose(self, branches: list, otherwise: list) -> str:
        for cond, body in branches:
            flag = self.value(cond)
            if not isinstance(flag, bool):
                raise _Fail("template", f"if condition must be true or false, got {_show(flag)}", cond[1])
            if flag:
                return self.block(body)
        return self.block(otherwise)

    def value(self, node: tuple) -> Any:
        """The value of ``node``; a ``_Missing`` is an error here (see :meth:`maybe`)."""
        result = self.maybe(node)
        if isinstance(result, _Missing):
            raise _Fail("undefined", f"{result.name!r} is undefined", node[1])
        return result

    def maybe(self, node: tuple) -> Any:
        kind, line = node[0], node[1]
        if kind == "lit":
            return node[2]
        if kind == "var":
            return self.lookup(node[2], line)
        if kind == "list":
            return [self.value(n) for n in node[2]]
        if kind == "map":
            return {k: self.value(n) for k, n in node[2]}
        if kind == "set":
            self.scopes[-1][node[2]] = self.value(node[3])
            return _UNSET
        if kind == "op":
            return _operate(node[2], self.value(node[3]), self.value(node[4]), line)
        if kind == "call":
            return _call(node[2], None if node[3] is None else self.value(node[3]), line)
        value = self.maybe(node[3])
        return _filter(node[2], value, None if node[4] is None else self.value(node[4]), line)

    def lookup(self, path: list, line: int) -> Any:
        name = path[0]
        for scope in reversed(self.scopes):
            if name in scope:
                value = scope[name]
                break
        else:
            return _Missing(name)
        for part in path[1:]:
            key = part if isinstance(part, str) else self.value(part)
            if isinstance(key, (list, tuple, dict)) or key is _UNSET:
                raise _Fail("template", f"cannot look up {name} by {_show(key)}", line)
            if isinstance(value, dict):
                if key not in value:
                    return _Missing(f"{name}.{key}" if isinstance(key, str) else f"{name}[{key!r}]")
                value = value[key]
            elif isinstance(value, (list, tuple)) and isinstance(key, int) and not isinstance(key, bool):
                if not -len(value) <= key < len(value):
                    raise _Fail("template", f"index {key} is out of range for {name} ({len(value)} items)", line)
                value = value[key]
            else:
                raise _Fail("template", f"cannot read {key!r} of {name}, which is {_show(value)}", line)
            name = f"{name}.{key}" if isinstance(key, str) else f"{name}[{key}]"
        return value


def _order(key: Any) -> tuple:
    """Sort key for table keys, as templar's ``BTreeMap`` orders them (booleans, numbers, text, null)."""
    if key is None:
        return (3, 0)
    return (0 if isinstance(key, bool) else 1 if isinstance(key, (int, float)) else 2, key)


def _int(value: Any, line: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Fail("template", f"arithmetic needs integers (templar has no decimals), got {_show(value)}", line)
    return value


def _operate(op: str, left: Any, right: Any, line: int) -> Any:
    if op in "+-*/%":
        a, b = _int(left, line), _int(right, line)
        if op in "/%" and b == 0:
            raise _Fail("template", "division by zero", line)
        quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1) if b else 0
        result = {"+": a + b, "-": a - b, "*": a * b, "/": quotient, "%": a - b * quotient}[op]
        if not _I64[0] <= result <= _I64[1]:
            raise _Fail("template", f"integer overflow in {a} {op} {b}", line)
        return result
    if op == "~":
        return _text(left, line, top=True) + _text(right, line, top=True)
    if op in ("&&", "||"):
        if not isinstance(left, bool) or not isinstance(right, bool):
            raise _Fail("template", f"{op!r} needs true or false on both sides, got {_show(left)} and "
                        f"{_show(right)}", line)
        return (left and right) if op == "&&" else (left or right)
    same = _comparable(left, right)
    if op in ("==", "!="):
        return (same and left == right) == (op == "==")
    if not same or not isinstance(left, (int, float, str)):
        raise _Fail("template", f"cannot compare {_show(left)} {op} {_show(right)}", line)
    return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]


def _comparable(a: Any, b: Any) -> bool:
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, number) and isinstance(b, number):
        return True
    return type(a) is type(b) or (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)))


def _call(name: str, arg: Any, line: int) -> Any:
    """MegFlow's ``range`` and templar's ``env``."""
    if name == "env":
        if not isinstance(arg, str):
            raise _Fail("template", f"env() needs a variable name, got {_show(arg)}", line)
        if arg not in os.environ:
            raise _Fail("template", f"environment variable {arg!r} is not set", line)
        return os.environ[arg]
    bounds = arg if isinstance(arg, (list, tuple)) else [arg]
    if len(bounds) not in (1, 2, 3) or any(isinstance(b, bool) or not isinstance(b, int) for b in bounds):
        raise _Fail("template", f"range() takes n, [start, end] or [start, end, step] (integers), got "
                    f"{_show(arg)}", line)
    if len(bounds) == 3 and bounds[2] <= 0:
        raise _Fail("template", f"range() step must be positive, got {bounds[2]}", line)
    return list(range(*bounds))


def _filter(name: str, value: Any, arg: Any, line: int) -> Any:
    """Templar's built-in filters (those MegFlow's build has); ``value`` may be ``_Missing``."""
    absent = isinstance(value, _Missing) or value is _UNSET
    if name == "default":
        return arg if absent else value
    if name == "exists":
        return not absent
    if isinstance(value, _Missing):
        raise _Fail("undefined", f"{value.name!r} is undefined", line)
    if name == "require":
        if absent or value is None:
            raise _Fail("template", "required value is missing", line)
        return value
    if name == "length":
        if not isinstance(value, (str, list, tuple)):
            raise _Fail("template", f"length needs text or a list, got {_show(value)}", line)
        return len(value)
    if name in ("lower", "upper", "trim", "string", "escape_html", "e"):
        text = _text(value, line, top=True)
        if name in ("escape_html", "e"):
            for old, new in (("&", "&amp;"), ('"', "&quot;"), ("/", "&#x2F;"), ("'", "&#x27;"),
                             ("<", "&lt;"), (">", "&gt;")):
                text = text.replace(old, new)
            return text
        return {"lower": text.lower, "upper": text.upper, "trim": text.strip}.get(name, lambda: text)()
    if name in ("split", "join"):
        sep = "\n" if arg is None else _text(arg, line, top=True) or "\n"
        if name == "split":
            return _text(value, line, top=True).split(sep)
        return sep.join(_text(v, line, top=False) for v in value) if isinstance(value, (list, tuple)) else value
    if name == "index":
        if not isinstance(value, (list, tuple)) or isinstance(arg, bool) or not isinstance(arg, int) \
                or not 0 <= arg < len(value):
            raise _Fail("template", f"index({_show(arg)}) needs a list with that item, got {_show(value)}", line)
        return value[arg]
    if name == "key":
        if not isinstance(value, dict) or arg not in value:
            raise _Fail("template", f"key({_show(arg)}) needs a table with that key, got {_show(value)}", line)
        return value[arg]
    if name == "replace":
        if not isinstance(arg, list) or len(arg) != 2:
            raise _Fail("template", "replace needs two arguments: replace(old, new)", line)
        return _text(value, line, top=True).replace(_text(arg[0], line, True), _text(arg[1], line, True))
    why = _LEFT_OUT.get(name, "is not a templar filter")
    raise _Fail("template", f"filter '{name}' {why}", line)


def _text(value: Any, line: int, top: bool) -> str:
    """A value as templar prints it: lists ``[1,2]``, tables ``{k => v}``, null ``null`` (``<null>``
    inside a list), whole-number decimals without ``.0``."""
    if value is _UNSET:
        return "" if top else "(Unassigned)"
    if value is None:
        return "null" if top else "<null>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text(v, line, False) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_text(k, line, False)} => {_text(value[k], line, False)}"
                              for k in sorted(value, key=_order)) + "}"
    raise _Fail("template", f"templar cannot print {type(value).__name__} values ({value!r})", line)


def _show(value: Any) -> str:
    """A value for error messages."""
    if isinstance(value, (dict, list, tuple)):
        return "a table" if isinstance(value, dict) else f"a list ({_text(value, 0, True)})"
    if isinstance(value, str):
        return repr(value)
    return "nothing" if value is _UNSET else _text(value, 0, True)
