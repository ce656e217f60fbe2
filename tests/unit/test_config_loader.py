"""The loader: files, includes, templates, and where its errors point."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from megflow_mp.config import load_config, load_config_string
from megflow_mp.errors import ConfigError

HEAD = 'main = "main"\n'
MAIN = HEAD + '[[graphs]]\nname = "main"\n'


def write(dir: Path, name: str, text: str) -> Path:
    path = dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def graph(name: str, *nodes: str) -> str:
    """A ``[[graphs]]`` table with one node per name (type ``T``)."""
    body = f'[[graphs]]\nname = "{name}"\n'
    return body + "".join(f'[[graphs.nodes]]\nname = "{n}"\nty = "T"\n' for n in nodes)


def node(name: str) -> str:
    return f'[[nodes]]\nname = "{name}"\nty = "T"\n'


def load_error(path: Path, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    return info.value


# --- files -----------------------------------------------------------------------------------------


def test_load_config_accepts_str_and_path(tmp_path):
    path = write(tmp_path, "app.toml", MAIN)
    assert load_config(path).main == load_config(str(path)).main == "main"


def test_missing_config_file(tmp_path):
    err = load_error(tmp_path / "nope.toml")
    assert err.file == str(tmp_path / "nope.toml")
    assert str(err) == f"{tmp_path / 'nope.toml'}: config file not found"


def test_toml_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, "app.toml", 'main = "main"\n[[graphs]]\nname = \n')
    err = load_error(path)
    assert err.file == str(path)
    assert "TOML syntax error at line 3, column" in str(err)


def test_validation_error_names_the_file(tmp_path):
    path = write(tmp_path, "app.toml", MAIN + 'connections = [{ cap = 0, ports = ["a:o", "b:i"] }]\n')
    assert str(load_error(path)) == f"{path}: graphs[0].connections[0].cap: expected an integer >= 1, got 0"


# --- includes --------------------------------------------------------------------------------------


def test_include_appends_after_own_entries_in_order(tmp_path):
    write(tmp_path, "b.toml", node("b_node") + graph("b_graph"))
    write(tmp_path, "sub/c.toml", node("c_node") + graph("c_graph"))
    top = write(tmp_path, "a.toml", 'include = ["b.toml", "sub/c.toml"]\n' + HEAD + node("a_node") + graph("main"))
    config = load_config(top)
    assert [n.name for n in config.nodes] == ["a_node", "b_node", "c_node"]
    assert [g.name for g in config.graphs] == ["main", "b_graph", "c_graph"]
    assert config.include == ["b.toml", "sub/c.toml"]


def test_nested_include_is_relative_to_the_including_file(tmp_path):
    write(tmp_path, "lib/b.toml", 'include = ["deeper/c.toml"]\n' + graph("b"))
    write(tmp_path, "lib/deeper/c.toml", graph("c"))
    top = write(tmp_path, "a.toml", 'include = ["lib/b.toml"]\n' + MAIN)
    assert [g.name for g in load_config(top).graphs] == ["main", "b", "c"]


def test_main_may_come_from_an_include(tmp_path):
    write(tmp_path, "b.toml", MAIN)
    write(tmp_path, "c.toml", 'main = "other"\n')
    top = write(tmp_path, "a.toml", 'include = ["b.toml", "c.toml"]\n')
    assert load_config(top).main == "main"


def test_top_file_main_wins(tmp_path):
    write(tmp_path, "b.toml", 'main = "other"\n' + graph("other"))
    top = write(tmp_path, "a.toml", 'include = ["b.toml"]\n' + MAIN)
    assert load_config(top).main == "main"


def test_include_cycle_names_the_chain(tmp_path):
    write(tmp_path, "b.toml", 'include = ["a.toml"]\n')
    top = write(tmp_path, "a.toml", 'include = ["b.toml"]\n' + MAIN)
    err = load_error(top)
    assert err.file == str(tmp_path / "b.toml")
    assert err.path == "include[0]"
    assert "include cycle: a.toml -> b.toml -> a.toml" in str(err)


def test_file_including_itself(tmp_path):
    top = write(tmp_path, "a.toml", 'include = ["./a.toml"]\n' + MAIN)
    assert str(load_error(top)) == f"{top}: include[0]: include cycle: a.toml -> a.toml"


def test_missing_include_names_the_including_file(tmp_path):
    top = write(tmp_path, "a.toml", 'include = ["b.toml", "gone.toml"]\n' + MAIN)
    write(tmp_path, "b.toml", "")
    err = load_error(top)
    assert (err.file, err.path) == (str(top), "include[1]")
    assert "included file 'gone.toml' not found" in str(err)


def test_include_must_be_a_list_of_strings(tmp_path):
    top = write(tmp_path, "a.toml", "include = [1]\n" + MAIN)
    assert str(load_error(top)) == f"{top}: include[0]: expected a string, got 1"


def test_error_in_included_file_uses_its_own_path(tmp_path):
    b = write(tmp_path, "b.toml", graph("b1") + graph("b2", "ok") + '[[graphs.nodes]]\nname = "bad"\nty = 3\n')
    top = write(tmp_path, "a.toml", 'include = ["b.toml"]\n' + MAIN + graph("a2"))
    err = load_error(top)
    assert str(err) == f"{b}: graphs[1].nodes[1].ty: expected a string, got 3"


def test_unknown_top_level_key_in_included_file(tmp_path):
    b = write(tmp_path, "b.toml", 'grahps = []\n')
    top = write(tmp_path, "a.toml", 'include = ["b.toml"]\n' + MAIN)
    assert str(load_error(top)).startswith(f"{b}: grahps: unknown field 'grahps'")


def test_duplicate_across_files_points_at_both(tmp_path):
    b = write(tmp_path, "b.toml", node("x") + node("det"))
    top = write(tmp_path, "a.toml", 'include = ["b.toml"]\n' + HEAD + node("det") + graph("main"))
    err = load_error(top)
    assert str(err) == f"{b}: nodes[1].name: duplicate node name 'det' (first defined at {top}: nodes[0].name)"


def test_syntax_error_in_included_file(tmp_path):
    b = write(tmp_path, "b.toml", "[[graphs]\n")
    top = write(tmp_path, "a.toml", 'include = ["b.toml"]\n' + MAIN)
    err = load_error(top)
    assert err.file == str(b)
    assert "TOML syntax error at line 1" in str(err)


def test_string_config_includes_relative_to_base_dir(tmp_path):
    write(tmp_path, "b.toml", graph("b"))
    config = load_config_string('include = ["b.toml"]\n' + MAIN, base_dir=tmp_path)
    assert [g.name for g in config.graphs] == ["main", "b"]


# --- templates -------------------------------------------------------------------------------------

TEMPLATE = """
main = "main"
[[graphs]]
name = "main"
{% for i in range(count) %}
[[graphs.nodes]]
name = "worker{{ i }}"
ty = "{{ ty }}"
{% endfor %}
"""


def test_template_with_dynamic_file_and_for_loop(tmp_path):
    top = write(tmp_path, "app.toml", TEMPLATE)
    dyn = write(tmp_path, "vars.toml", 'count = 3\nty = "Detect"\n')
    nodes = load_config(top, dynamic=dyn).graphs[0].nodes
    assert [(n.name, n.ty) for n in nodes] == [("worker0", "Detect"), ("worker1", "Detect"), ("worker2", "Detect")]


def test_explicit_variables_win_over_dynamic_file(tmp_path):
    top = write(tmp_path, "app.toml", TEMPLATE)
    dyn = write(tmp_path, "vars.toml", 'count = 3\nty = "Detect"\n')
    nodes = load_config(top, dynamic=os.fspath(dyn), variables={"count": 1}).graphs[0].nodes
    assert [(n.name, n.ty) for n in nodes] == [("worker0", "Detect")]


def test_template_without_variables_is_rendered(tmp_path):
    text = MAIN + "{% for i in range(2) %}" + '[[graphs.nodes]]\nname = "n{{ i }}"\nty = "T"\n{% endfor %}'
    assert [n.name for n in load_config_string(text).graphs[0].nodes] == ["n0", "n1"]


def test_included_files_are_rendered_with_the_same_variables(tmp_path):
    write(tmp_path, "b.toml", '[[graphs]]\nname = "{{ sub }}"\n')
    top = write(tmp_path, "a.toml", 'include = ["b.toml"]\n' + MAIN)
    assert [g.name for g in load_config(top, variables={"sub": "inner"}).graphs] == ["main", "inner"]


def test_undefined_template_variable(tmp_path):
    top = write(tmp_path, "app.toml", TEMPLATE)
    err = load_error(top, variables={"count": 2})
    assert err.file == str(top)
    assert "undefined template variable at line 8: 'ty' is undefined" in str(err)


def test_undefined_variable_in_included_file(tmp_path):
    b = write(tmp_path, "b.toml", 'x = "{{ nope }}"\n')
    top = write(tmp_path, "a.toml", 'include = ["b.toml"]\n' + MAIN)
    err = load_error(top, variables={})
    assert str(err) == f"{b}: undefined template variable at line 1: 'nope' is undefined"


def test_template_syntax_error_names_line(tmp_path):
    top = write(tmp_path, "app.toml", MAIN + "{% for i in range(2) %}\n{{ i + }}\n{% endfor %}\n")
    err = load_error(top)
    assert err.file == str(top)
    assert "template syntax error at line 5" in str(err)


def test_missing_dynamic_file(tmp_path):
    top = write(tmp_path, "app.toml", TEMPLATE)
    err = load_error(top, dynamic=tmp_path / "vars.toml")
    assert str(err) == f"{tmp_path / 'vars.toml'}: variables file not found"


def test_toml_error_after_rendering_says_so(tmp_path):
    top = write(tmp_path, "app.toml", MAIN + "ty = {{ ty }}\n")
    err = load_error(top, variables={"ty": "not quoted"})
    assert err.file == str(top)
    assert "TOML syntax error at line 4, column" in str(err)
    assert "rendered template" in str(err)


# --- templar, MegFlow's template dialect -----------------------------------------------------------

TEMPLAR_APP = """\
{{ prefix = 'cam' -}}
{{ half = (count / 2) -}}
main = "main"
[[graphs]]
name = "main"
{%- for i in range(count) %}
[[graphs.nodes]]
name = "{{ prefix ~ i }}"
ty = "{% if i < half %}Detect{% else %}Track{% end if %}"
size = {{ sizes | index(i) }}
{%- end for %}
"""


def node_args(config, *keys):
    return [(n.name, n.ty, *(n.args[k] for k in keys)) for n in config.graphs[0].nodes]


def test_templar_config_with_dynamic_file(tmp_path):
    top = write(tmp_path, "app.toml", TEMPLAR_APP)
    dyn = write(tmp_path, "vars.toml", "count = 4\nsizes = [320, 416, 512, 640]\n")
    assert node_args(load_config(top, dynamic=dyn), "size") == [
        ("cam0", "Detect", 320), ("cam1", "Detect", 416), ("cam2", "Track", 512), ("cam3", "Track", 640)]


def test_templar_error_in_included_file_names_it_and_the_line(tmp_path):
    b = write(tmp_path, "b.toml", "{% for i in L %}\n{{ i + 'x' }}\n{% end for %}\n")
    top = write(tmp_path, "a.toml", 'include = ["b.toml"]\n' + MAIN)
    err = load_error(top, variables={"L": [1]})
    assert err.file == str(b)
    assert "template error at line 2: arithmetic needs integers" in str(err)


def test_jinja_and_templar_files_include_each_other(tmp_path):
    write(tmp_path, "b.toml", "{% for i in range(n) %}" + node("t{{ i }}") + "{% end for %}")
    top = write(tmp_path, "a.toml", 'include = ["b.toml"]\n' + MAIN + "{% for i in range(n) %}" + node("j{{ i }}")
                + "{% endfor %}")
    assert [n.name for n in load_config(top, variables={"n": 2}).nodes] == ["j0", "j1", "t0", "t1"]


def test_unmarked_template_uses_the_rendering_that_is_toml(tmp_path):
    text = MAIN + '[[graphs.nodes]]\nname = "n"\nty = "T"\nflag = {{ flag }}\nurls = {{ urls }}\n'
    # jinja2 prints True (not TOML), templar prints [a,b] (not TOML): each variable needs its own dialect
    assert node_args(load_config_string(text.replace("urls = {{ urls }}\n", ""), variables={"flag": True}),
                     "flag") == [("n", "T", True)]
    assert node_args(load_config_string(text.replace("flag = {{ flag }}\n", ""), variables={"urls": ["a", "b"]}),
                     "urls") == [("n", "T", ["a", "b"])]
    err = load_config_error(text, variables={"flag": True, "urls": ["a"]})
    assert "TOML syntax error" in str(err)


def test_unmarked_template_that_means_two_things_needs_a_mark():
    text = MAIN + '[[graphs.nodes]]\nname = "n"\nty = "T"\nsize = {{ 1 + 2 * 3 }}\n'
    err = load_config_error(text, variables={})
    assert "means different things in templar (MegFlow) and in jinja2" in str(err)
    assert node_args(load_config_string("{# dialect: templar #}\n" + text), "size") == [("n", "T", 9)]
    assert node_args(load_config_string("{# dialect: jinja #}\n" + text), "size") == [("n", "T", 7)]


def test_shipped_style_jinja_filters_still_render():
    text = MAIN + '[[graphs.nodes]]\nname = "n"\nty = "T"\nmodel = {{ m | default("a.onnx") | tojson }}\n'
    assert node_args(load_config_string(text, variables={}), "model") == [("n", "T", "a.onnx")]


def test_template_mixing_dialects_is_an_error(tmp_path):
    top = write(tmp_path, "app.toml", MAIN + "{% for i in L %}{% end for %}\n{% for i in L %}{% endfor %}\n")
    err = load_error(top, variables={"L": []})
    assert err.file == str(top)
    assert "template mixes templar (line 4" in str(err)


def load_config_error(text: str, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config_string(text, **kwargs)
    return info.value


@pytest.mark.parametrize("tag", ['{% include "app.toml" %}', '{% include "other.toml" %}', '{% import "app.toml" as m %}',
                                 '{% extends "app.toml" %}'])
def test_a_jinja_template_cannot_load_another_template(tmp_path, tag):
    """A template including itself recursed until the interpreter's stack overflowed (a segfault)."""
    (tmp_path / "app.toml").write_text(f'main = "g"\n{tag}\n[[graphs]]\nname = "g"\n')
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "app.toml", variables={})
    assert "cannot include, import or extend another template" in str(err.value)
    assert "include = [...]" in str(err.value)
