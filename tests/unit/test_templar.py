"""MegFlow's templar config dialect: rendering, its left-to-right operators, and errors with lines."""

from __future__ import annotations

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from megflow_mp.config.templar import detect_dialect, render
from megflow_mp.errors import ConfigError


def r(text: str, **variables) -> str:
    return render(text, variables, "t.toml")


def fail(text: str, **variables) -> str:
    with pytest.raises(ConfigError) as info:
        render(text, variables, "t.toml")
    assert info.value.file == "t.toml"
    return info.value.message


# MegFlow's own parser test (flow-rs/src/config/parser.rs, test_template), verbatim.
MEGFLOW_TEMPLATE = r"""
include=[]
{{ a = 1 -}}
{{ b = "string" -}}
a={{a}}
b="{{b}}"
c = [{% for i in List %} {{- i+1 -}}, {% end for %}]
d = [{% for i in List %} {{- i*2 -}}, {% end for %}]
e={a={{a}}}"""


def test_megflow_parser_test():
    text = r(MEGFLOW_TEMPLATE, **tomllib.loads("List=[1,2,3]"))
    config = tomllib.loads(text)
    assert config["a"] == 1
    assert config["b"] == "string"
    assert config["c"] == [2, 3, 4]
    assert set(config["d"]) >= {2, 4, 6}
    assert config["e"] == {"a": 1}
    # '{{-' eats the space before it, '-}}' has none after it; ', ' stays, as in templar's grammar.
    assert "\nc = [2, 3, 4, ]\n" in text
    assert text.startswith("\ninclude=[]\na=1\nb=\"string\"\n")


def test_assignments_of_each_kind_print_nothing_and_are_used_later():
    text = "{{ n = 3 }}|{{ s = 'cam' }}|{{ xs = [1, 2] }}|{{ m = {'k': 'v', 'n': 2} }}"
    assert r(text) == "|||"
    assert r(text + "{{ n * 2 }} {{ s ~ n }} {{ xs }} {{ m.k }}{{ m['n'] + 1 }}") == "|||6 cam3 [1,2] v3"


def test_assignment_overrides_a_dynamic_variable_without_changing_the_callers_dict():
    variables = {"n": 1}
    assert render("{{ n = 5 }}{{ n }}", variables, "t.toml") == "5"
    assert variables == {"n": 1}


def test_arithmetic_goes_left_to_right_like_templar():
    assert r("{{ 1 + 2 * 3 }}") == "9"
    assert r("{{ 20+5/5 }}") == "5"
    assert r("{{ 20 + (5 / 5) }}") == "21"
    assert r("{{ 12 % 5 }} {{ 9 - 3 - 3 }} {{ x - 1 }}", x=4) == "2 3 3"


def test_integer_division_truncates_toward_zero():
    assert r("{{ -7 / 2 }} {{ -7 % 2 }} {{ 7 / -2 }}") == "-3 -1 -3"


def test_concat_renders_both_sides():
    assert r("{{ 'one' ~ 1 ~ true }}") == "one1true"
    assert r("{{ 'a' ~ 'b' | upper }}") == "AB"  # a filter takes everything on its left


def test_comparisons():
    assert r("{{ 3 > 2 }} {{ 2 >= 3 }} {{ 1 < 1 }} {{ 1 <= 1 }}") == "true false false true"
    assert r("{{ 'a' == 'a' }} {{ 1 == '1' }} {{ true != false }} {{ [1, 2] == [1, 2] }}") == "true false true true"
    assert r("{{ (1 != 2) && (2 > 1) }} {{ false || (x == 3) }}", x=3) == "true true"


def test_conditionals_with_else_if_and_else():
    text = "{% if n == 1 %}one{% else if n == 2 %}two{% else %}many{% end if %}"
    assert [r(text, n=n) for n in (1, 2, 3)] == ["one", "two", "many"]
    assert r("{% if flag %}on{% end if %}.", flag=False) == "."


def test_nested_loops_and_loop_scope():
    text = "{% for i in range(3) %}{% for j in range(i) %}{{ i }}{{ j }} {% end for %}{% end for %}"
    assert r(text) == "10 20 21 "
    # a loop keeps its assignments and its variable to itself, across its iterations
    text = "{{ total = 0 }}{% for i in [1, 2, 3] %}{{ total = (total + i) }}{{ total }},{% end for %}{{ total }}"
    assert r(text) == "1,3,6,0"
    assert "'i' is undefined" in fail("{% for i in [1] %}{% end for %}{{ i }}")


def test_loop_over_a_table_goes_by_sorted_key():
    text = "{% for kv in t %}{{ kv.key }}={{ kv.value }};{% end for %}"
    assert r(text, t={"b": 2, "a": 1}) == "a=1;b=2;"


def test_scope_block_keeps_assignments_inside():
    assert r("{{ x = 1 }}{% scope %}{{ x = 2 }}{{ x }}{% end scope %}{{ x }}") == "21"


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("range(3)", "[0,1,2]"),
        ("range(0)", "[]"),
        ("range([2, 5])", "[2,3,4]"),
        ("range([0, 10, 3])", "[0,3,6,9]"),
        ("range(1, 4)", "[1,2,3]"),  # templar passes several arguments as one list
        ("range(n)", "[0,1]"),
    ],
)
def test_range_forms(expr, expected):
    assert r("{{ " + expr + " }}", n=2) == expected


def test_range_rejects_bad_arguments():
    assert "step must be positive" in fail("{{ range([0, 5, 0]) }}")
    assert "range() takes n, [start, end] or [start, end, step]" in fail("{{ range('3') }}")
    assert "range() takes" in fail("{{ range([1, 2, 3, 4]) }}")


def test_whitespace_control_on_either_side():
    assert r("a  {{- 1 -}}  b") == "a1b"
    assert r("a  {{- 1 }}  b") == "a1  b"
    assert r("a  {{ 1 -}}\n\n  b") == "a  1b"
    assert r("x = [\n{%- for i in L %}\n  {{ i }},\n{%- end for %}\n]", L=[1, 2]) == "x = [\n  1,\n  2,\n]"
    assert r("a {#- note -#} b {# kept #}c") == "ab c"


def test_attribute_and_index_access():
    cfg = {"model": {"path": "m.onnx"}, "sizes": [320, 640]}
    assert r("{{ cfg.model.path }} {{ cfg['model']['path'] }} {{ cfg.sizes[1] }} {{ cfg.sizes[i] }}", cfg=cfg, i=0) \
        == "m.onnx m.onnx 640 320"
    assert r("{{ cfg.sizes | index(0) }} {{ cfg.model | key('path') }}", cfg=cfg) == "320 m.onnx"


def test_brackets_and_closers_inside_strings_and_nested_tables():
    assert r("{{ [']', ','] | join('+') }}") == "]+,"
    assert r("{{ {'a': {'b': '}}'}} | key('a') | key('b') }}!") == "}}!"
    assert r("{% if 'x' == \"%}\" %}no{% else %}yes{% end if %}") == "yes"


def test_values_print_as_templar_prints_them():
    assert r("{{ t }} {{ f }} {{ x }} {{ y }} {{ z }} {{ l }} {{ m }}", t=True, f=False, x=0.5, y=2.0, z=None,
             l=["a", None], m={"b": 1, "a": [1]}) == "true false 0.5 2 null [a,<null>] {a => [1],b => 1}"


def test_filters():
    assert r("{{ missing | default(7) }} {{ here | default(7) }}", here=1) == "7 1"
    assert r("{{ missing | exists }} {{ here | exists }}", here=0) == "false true"
    assert r("{{ ' Cam ' | trim | upper }}{{ 'X' | lower }}") == "CAMx"
    assert r("{{ xs | length }} {{ 'abc' | length + 1 }}", xs=[1, 2]) == "2 4"
    assert r("{{ xs | join(', ') }}|{{ 'a-b' | split('-') }}|{{ 'a-b' | replace('-', '_') }}", xs=[1, 2]) \
        == "1, 2|[a,b]|a_b"
    assert r("{{ 5 + 5 | string ~ '!' }} {{ '<a>' | e }}") == "10! &lt;a&gt;"
    assert r("{{ x | require }}", x=3) == "3"


def test_env_function(monkeypatch):
    monkeypatch.setenv("MEGFLOW_MP_TEMPLAR_TEST", "/models")
    assert r("{{ env('MEGFLOW_MP_TEMPLAR_TEST') ~ '/a.onnx' }}") == "/models/a.onnx"
    monkeypatch.delenv("MEGFLOW_MP_TEMPLAR_TEST")
    assert "'MEGFLOW_MP_TEMPLAR_TEST' is not set" in fail("{{ env('MEGFLOW_MP_TEMPLAR_TEST') }}")


@pytest.mark.parametrize(
    "text, message",
    [
        ("a\n{{ nope }}", "undefined template variable at line 2: 'nope' is undefined"),
        ("a\n\n{{ m.missing }}", "undefined template variable at line 3: 'm.missing' is undefined"),
        ("a\n{{ 1 + }}", "template syntax error at line 2: unexpected end of tag"),
        ("a\n{{ 1 ", "template syntax error at line 2: tag is never closed with '}}'"),
        ("{% for i in L %}\n{{ i }}\n{% endfor %}", "template syntax error at line 3: unknown tag '{% endfor %}' "
                                                     "(templar writes '{% end for %}')"),
        ("x\n{% for i in L %}\n{{ i }}\n", "template syntax error at line 2: '{% for %}' is never closed"),
        ("x\n{% end if %}", "template syntax error at line 2: '{% end if %}' without an opening tag"),
        ("{% if true %}\n{% end for %}", "template syntax error at line 2: expected '{% end if %}'"),
        ("{% if true %}{% elif false %}{% end if %}", "'{% else if ... %}'"),
        ("{% set x = 1 %}", "templar assigns with '{{ name = value }}'"),
        ("\n{{ x = 1 + 2 }}", "template syntax error at line 2: '+' after an assignment"),
        ("{{ 0.5 }}", "0.5: templar numbers are integers"),
        ("{{ 'unclosed }}", "string is never closed"),
        ("{{ script('ls') }}", "function 'script' runs shell commands"),
        ("{{ nope(1) }}", "function 'nope' is not a templar function"),
        ("\n\n{{ x | json }}", "template error at line 3: filter 'json' needs templar's json extension"),
        ("{{ x | tojson }}", "filter 'tojson' is not a templar filter"),
        ("{% if x %}y{% end if %}", "template error at line 1: if condition must be true or false, got 3"),
        ("{{ 'a' + 1 }}", "arithmetic needs integers (templar has no decimals), got 'a'"),
        ("{{ y * 2 }}", "arithmetic needs integers (templar has no decimals), got 0.5"),
        ("{{ 1 / 0 }}", "division by zero"),
        ("{{ 1 != 2 && 2 > 1 }}", "'&&' needs true or false on both sides, got true and 2"),
        ("{{ L.x }}", "cannot read 'x' of L, which is a list ([1,2])"),
        ("{{ L[5] }}", "index 5 is out of range for L (2 items)"),
        ("{{ m[[1]] }}", "cannot look up m by a list ([1])"),
        ("{{ 'a' < 1 }}", "cannot compare 'a' < 1"),
        ("{{ [1] < [2] }}", "cannot compare a list ([1]) < a list ([2])"),
        ("{{ none | require }}", "required value is missing"),
        ("{{ }}", "template syntax error at line 1: unexpected end of tag"),
        ("{# never closed", "comment '{#' is never closed"),
    ],
)
def test_errors_name_the_line(text, message):
    assert message in fail(text, x=3, y=0.5, L=[1, 2], m={"a": 1}, none=None)


def test_detect_dialect():
    assert detect_dialect("{% for i in L %}{% end for %}", "f") == "templar"
    assert detect_dialect("{% if a %}{% else if b %}{% end if %}", "f") == "templar"
    assert detect_dialect("{{ n = 3 -}}\nx = {{ n }}", "f") == "templar"
    assert detect_dialect("{% for i in L %}{% endfor %}", "f") == "jinja"
    assert detect_dialect("{% set n = 3 %}{{ n }}", "f") == "jinja"
    assert detect_dialect("x = {{ n | default(1) }}\ny = {{ a == b }}", "f") is None
    assert detect_dialect("{# dialect: templar #}\nx = {{ 1 + 2 * 3 }}", "f") == "templar"
    assert detect_dialect("{# dialect: jinja #}{% for i in L %}{% end for %}", "f") == "jinja"


def test_mixed_dialects_are_an_error_naming_both_lines():
    with pytest.raises(ConfigError) as info:
        detect_dialect("a\n{% for i in L %}{% end for %}\n{% for i in L %}{% endfor %}\n", "app.toml")
    assert info.value.file == "app.toml"
    assert "mixes templar (line 2: '{% end for') and jinja2 (line 3: '{% endfor')" in info.value.message
