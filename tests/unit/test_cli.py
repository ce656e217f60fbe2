"""The ``megflow-mp`` command in-process: check, dump, default config path, --dynamic, user errors.

Each test writes a plugin package (``__init__.py``, a module, ``<name>.toml``) under tmp_path.
Every user error must be exit code 1 and a message on stderr, never a Python traceback.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.isolation import isolated_imports  # noqa: F401

from megflow_mp.cli import main
from megflow_mp.project import config_file
from megflow_mp.registry import builtin_registry

BUILTINS = len(builtin_registry().nodes)

PLUGIN = '''
from megflow_mp import Envelope, register


@register(outputs=["out"])
class CliSource:
    def __init__(self, name, args):
        self.n = args.get("n", 1)

    def exec(self):
        for i in range(self.n):
            self.out.send(Envelope.pack(i))
'''

CONFIG = '''
main = "app"

[[graphs]]
name = "app"
nodes = [
    { name = "src", ty = "CliSource", cloned = 2 },
    { name = "mid", ty = "Transform" },
    { name = "sink", ty = "NoopConsumer" },
]
connections = [
    { cap = 4, ports = ["src:out", "mid:inp"] },
    { cap = 4, ports = ["mid:out", "sink:inp"] },
]
'''


pytestmark = pytest.mark.usefixtures("isolated_imports")


_counter = iter(range(1_000_000))


def write_app(root: Path, files: dict[str, str], config: str | None = CONFIG, name: str | None = None) -> Path:
    """A plugin package ``root/<name>`` holding ``files`` and, unless None, ``<name>.toml``."""
    name = name or f"cliapp{next(_counter)}"  # a fresh package name: no clash in sys.modules
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for fname, text in files.items():
        (pkg / fname).write_text(textwrap.dedent(text).lstrip())
    if config is not None:
        (pkg / f"{name}.toml").write_text(textwrap.dedent(config).lstrip())
    return pkg


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, out: str, err: str, traceback: bool = False) -> str:
    """Exit 1, nothing on stdout, no traceback (but a plugin's own, when ``traceback``); returns the
    message after ``megflow-mp: error: ``."""
    assert code == 1
    assert out == ""
    assert err.startswith("megflow-mp: error: ")
    assert err.count("megflow-mp: error: ") == 1
    if not traceback:
        assert "Traceback" not in err
    assert "megflow_mp/cli.py" not in err  # the CLI itself never crashes
    return err[len("megflow-mp: error: "):].rstrip("\n")


# --- check ----------------------------------------------------------------------------------------------


def test_check_prints_the_summary_and_exits_0(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN})
    code, out, err = run(capsys, "check", "-p", pkg)
    assert code == 0
    assert out == (f"{pkg / (pkg.name + '.toml')}: ok (4 worker processes, 1 graphs, "
                   f"{BUILTINS + 1} node types; plugins: {pkg})\n")
    assert "Traceback" not in err


def test_check_with_an_explicit_config(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=None)
    other = tmp_path / "elsewhere.toml"
    other.write_text(CONFIG.replace("cloned = 2", "cloned = 5"))
    code, out, _ = run(capsys, "check", "-c", other, "-p", pkg)
    assert code == 0
    assert out.startswith(f"{other}: ok (7 worker processes, ")


def test_check_imports_module_path_entries(tmp_path, capsys):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "cli_helper_mod.py").write_text("N = 3\n")
    plugin = PLUGIN.replace("self.n = args.get(\"n\", 1)", "self.n = cli_helper_mod.N")
    pkg = write_app(tmp_path / "plugins", {"nodes.py": "import cli_helper_mod\n" + plugin})
    code, out, err = run(capsys, "check", "-p", pkg, "-m", extra)
    assert code == 0, err
    assert ": ok (" in out


# --- the default config path --------------------------------------------------------------------------------


def test_default_config_is_dirname_toml_inside_the_plugin_dir(tmp_path):
    assert config_file(None, [str(tmp_path / "myapp")]) == tmp_path / "myapp" / "myapp.toml"
    assert config_file(str(tmp_path / "x.toml"), [str(tmp_path / "myapp")]) == tmp_path / "x.toml"


def test_default_config_uses_the_real_dirname(tmp_path, monkeypatch):
    (tmp_path / "myapp").mkdir()
    monkeypatch.chdir(tmp_path / "myapp")
    assert config_file(None, ["."]) == Path(".") / "myapp.toml"


def test_missing_default_config_names_the_expected_file(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=None)
    message = assert_user_error(*run(capsys, "check", "-p", pkg))
    assert message == f"{pkg / (pkg.name + '.toml')}: config file not found"


# --- user errors ------------------------------------------------------------------------------------------


def test_toml_syntax_error_is_one_line(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=CONFIG + "\nthis is not toml\n")
    message = assert_user_error(*run(capsys, "check", "-p", pkg))
    assert "\n" not in message
    assert message.startswith(f"{pkg / (pkg.name + '.toml')}: TOML syntax error at line ")


def test_unknown_field_names_its_toml_path(tmp_path, capsys):
    config = CONFIG.replace("cap = 4, ports", "cap = 4, colour = 1, ports", 1)
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=config)
    message = assert_user_error(*run(capsys, "check", "-p", pkg))
    assert "\n" not in message
    assert message.startswith(f"{pkg / (pkg.name + '.toml')}: graphs[0].connections[0].colour: "
                              f"unknown field 'colour'")


def test_unknown_node_type_lists_the_known_types(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=CONFIG.replace('ty = "Transform"', 'ty = "Transfrom"'))
    message = assert_user_error(*run(capsys, "check", "-p", pkg))
    assert "\n" not in message
    assert message.startswith(f"{pkg / (pkg.name + '.toml')}: graphs[0].nodes[1].ty: unknown node type 'Transfrom'")
    known = re.search(r"known node types: ([^;]*);", message).group(1).split(", ")
    assert "Transform" in known and "CliSource" in known and len(known) == BUILTINS + 1


def test_plugin_import_error_names_the_file(tmp_path, capsys):
    broken = "import os\n\nraise RuntimeError('plugin is broken')\n"
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN, "broken.py": broken})
    message = assert_user_error(*run(capsys, "check", "-p", pkg), traceback=True)
    lines = message.splitlines()
    assert lines[0] == f"{pkg / 'broken.py'}: failed to import plugin module '{pkg.name}.broken'"
    assert f'File "{pkg / "broken.py"}", line 3, in <module>' in message  # the plugin's own traceback
    assert lines[-1] == "RuntimeError: plugin is broken"


def test_plugin_syntax_error_names_the_file(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN, "bad_syntax.py": "def f(:\n"})
    message = assert_user_error(*run(capsys, "check", "-p", pkg), traceback=True)
    assert message.splitlines()[-1].startswith("SyntaxError: ")
    assert message.splitlines()[0] == f"{pkg / 'bad_syntax.py'}: failed to import plugin module '{pkg.name}.bad_syntax'"


def test_missing_plugin_dir(tmp_path, capsys):
    config = tmp_path / "x.toml"
    config.write_text(CONFIG)
    message = assert_user_error(*run(capsys, "check", "-c", config, "-p", tmp_path / "nope"))
    assert message == f"{tmp_path / 'nope'}: plugin directory {str(tmp_path / 'nope')!r} does not exist"


def test_no_config_and_no_plugin_dir_is_a_user_error(capsys):
    message = assert_user_error(*run(capsys, "check"))
    assert message.startswith("no config file given (no plugin directory): name one")


# --- dump ---------------------------------------------------------------------------------------------------


def test_dump_writes_a_dot_file(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN})
    target = tmp_path / "x.dot"
    code, out, _ = run(capsys, "dump", "-p", pkg, "-o", target)
    assert code == 0
    assert out == f"wrote {target}\n"
    text = target.read_text()
    assert text.startswith("digraph megflow {")
    assert all(f'"app/{n}"' in text for n in ("src", "mid", "sink"))


def test_dump_to_an_unknown_format_is_a_user_error(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN})
    message = assert_user_error(*run(capsys, "dump", "-p", pkg, "-o", tmp_path / "x.txt"))
    assert "x.txt" in message
    assert not (tmp_path / "x.txt").exists()


def test_dump_without_an_output_writes_an_svg_beside_the_config(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN})
    code, out, err = run(capsys, "dump", pkg / f"{pkg.name}.toml")
    assert code == 0, err
    target = pkg / f"{pkg.name}.svg"
    assert out == f"wrote {target}\n"
    assert "<svg" in target.read_text()


# --- --dynamic ---------------------------------------------------------------------------------------------


TEMPLATE = CONFIG.replace("cloned = 2", "cloned = {{ replicas }}").replace('ty = "NoopConsumer"', 'ty = "{{ sink }}"')


def test_dynamic_variables_render_the_config(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=TEMPLATE)
    variables = tmp_path / "vars.toml"
    variables.write_text('replicas = 6\nsink = "NoopConsumer"\n')
    code, out, err = run(capsys, "check", "-p", pkg, "--dynamic", variables)
    assert code == 0, err
    assert ": ok (8 worker processes, " in out


def test_dynamic_variables_reach_dump(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=TEMPLATE)
    variables = tmp_path / "vars.toml"
    variables.write_text('replicas = 1\nsink = "Transform"\n')
    target = tmp_path / "x.dot"
    code, _, err = run(capsys, "dump", "-p", pkg, "--dynamic", variables, "-o", target)
    assert code == 0, err
    assert '"app/sink" [label="sink\\nTransform"' in target.read_text()


def test_template_without_its_variables_is_a_user_error(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=TEMPLATE)
    message = assert_user_error(*run(capsys, "check", "-p", pkg))
    assert "\n" not in message
    assert message.startswith(str(pkg / (pkg.name + ".toml")))
    assert "replicas" in message


def test_missing_dynamic_file_is_a_user_error(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=TEMPLATE)
    message = assert_user_error(*run(capsys, "check", "-p", pkg, "--dynamic", tmp_path / "vars.toml"))
    assert message == f"{tmp_path / 'vars.toml'}: variables file not found"


# --- which plugins: -p, the config's `plugins`, the config's own directory ---------------------------------


def test_config_alone_finds_plugins_named_in_it_from_any_directory(tmp_path, capsys, monkeypatch):
    pkg = write_app(tmp_path / "plugins", {"nodes.py": PLUGIN}, config=None)
    conf = tmp_path / "configs" / "app" / "app.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text(f'plugins = ["../../plugins/{pkg.name}"]\n' + CONFIG)
    monkeypatch.chdir(tmp_path / "configs")
    code, out, err = run(capsys, "check", "app/app.toml")
    assert code == 0, err
    assert out.endswith(f"plugins: {Path('..') / 'plugins' / pkg.name})\n")


def test_plugins_named_by_an_included_file_are_relative_to_that_file(tmp_path, capsys):
    pkg = write_app(tmp_path / "plugins", {"nodes.py": PLUGIN}, config=None)
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "common.toml").write_text(f'plugins = ["../plugins/{pkg.name}"]\n')
    conf = tmp_path / "app.toml"
    conf.write_text('include = ["common/common.toml"]\n' + CONFIG)
    code, out, err = run(capsys, "check", conf)
    assert code == 0, err
    assert out.endswith(f"plugins: {tmp_path / 'plugins' / pkg.name})\n")


def test_a_missing_plugin_directory_in_the_config_names_the_field(tmp_path, capsys):
    conf = tmp_path / "app.toml"
    conf.write_text('plugins = ["here", "nope"]\n' + CONFIG)
    (tmp_path / "here").mkdir()
    message = assert_user_error(*run(capsys, "check", conf))
    assert message == f"{conf}: plugins[1]: plugin directory not found: {tmp_path / 'nope'}"


def test_the_configs_own_directory_is_the_plugin_directory_when_it_holds_modules(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=None)
    conf = pkg / "config.toml"
    conf.write_text(CONFIG)
    code, out, err = run(capsys, "check", conf)
    assert code == 0, err
    assert out.endswith(f"plugins: {pkg})\n")


def test_without_plugins_only_builtin_types_are_known(tmp_path, capsys):
    conf = tmp_path / "conf" / "app.toml"
    conf.parent.mkdir()
    conf.write_text(CONFIG)
    message = assert_user_error(*run(capsys, "check", conf))
    assert "unknown node type 'CliSource'" in message
    conf.write_text(CONFIG.replace('"CliSource", cloned = 2', '"NoopProducer"'))
    code, out, _ = run(capsys, "check", conf)
    assert code == 0 and out.endswith("plugins: built-in node types only)\n")


def test_p_overrides_the_configs_plugins(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=None)
    conf = tmp_path / "app.toml"
    conf.write_text('plugins = ["nope"]\n' + CONFIG)
    code, out, err = run(capsys, "check", conf, "-p", pkg)
    assert code == 0, err
    assert out.endswith(f"plugins: {pkg})\n")


def test_repeated_p_loads_every_directory(tmp_path, capsys):
    one = write_app(tmp_path, {"nodes.py": PLUGIN}, config=None)
    other = PLUGIN.replace("class CliSource", "class CliOther")
    two = write_app(tmp_path, {"other.py": other}, config=None)
    conf = tmp_path / "app.toml"
    conf.write_text(CONFIG.replace('ty = "Transform"', 'ty = "CliOther"'))
    # CliOther has no input port, so the config is wrong only if both directories were loaded
    message = assert_user_error(*run(capsys, "check", conf, "-p", one, "-p", two))
    assert "CliOther" in message and "unknown node type" not in message


def test_megflows_own_quickstart_command_line_works(tmp_path, capsys):
    """``megflow_run -p app/config.toml -p app``: a -p naming a .toml file is the config."""
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=None)
    (pkg / "config.toml").write_text(CONFIG)
    code, out, err = run(capsys, "check", "-p", pkg / "config.toml", "-p", pkg)
    assert code == 0, err
    assert out.startswith(f"{pkg / 'config.toml'}: ok (4 worker processes")


def test_two_different_configs_are_a_user_error(tmp_path, capsys):
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN})
    (tmp_path / "b.toml").write_text(CONFIG)
    message = assert_user_error(*run(capsys, "check", pkg / f"{pkg.name}.toml", "-c", tmp_path / "b.toml"))
    assert message.startswith("several configs given")


# --- check catches what would otherwise fail only at run ------------------------------------------------------


def test_a_node_class_without_exec_is_named(tmp_path, capsys):
    plugin = PLUGIN + '''

@register(inputs=["inp"], outputs=["out"])
class NoExec:
    def __init__(self, name, args):
        pass
'''
    pkg = write_app(tmp_path, {"nodes.py": plugin}, config=CONFIG.replace('ty = "Transform"', 'ty = "NoExec"'))
    message = assert_user_error(*run(capsys, "check", "-p", pkg))
    assert message == (f"{pkg / (pkg.name + '.toml')}: graphs[0].nodes[1].ty: node type 'NoExec' "
                       f"({pkg / 'nodes.py'}) cannot be used: it has no exec() method")


def test_a_node_class_without_the_name_args_constructor_is_named(tmp_path, capsys):
    plugin = PLUGIN + '''

@register(inputs=["inp"], outputs=["out"])
class NoArgs:
    def __init__(self):
        pass

    def exec(self):
        pass
'''
    pkg = write_app(tmp_path, {"nodes.py": plugin}, config=CONFIG.replace('ty = "Transform"', 'ty = "NoArgs"'))
    message = assert_user_error(*run(capsys, "check", "-p", pkg))
    assert message.startswith(f"{pkg / (pkg.name + '.toml')}: graphs[0].nodes[1].ty: node type 'NoArgs' ")
    assert "cannot be built as NoArgs(name, args)" in message


def test_a_missing_model_file_is_named_with_its_field(tmp_path, capsys):
    config = CONFIG.replace('{ name = "src", ty = "CliSource", cloned = 2 }',
                            '{ name = "src", ty = "CliSource", cloned = 2, model = "m/x.onnx" }')
    pkg = write_app(tmp_path, {"nodes.py": PLUGIN}, config=config)
    message = assert_user_error(*run(capsys, "check", "-p", pkg))
    assert message.startswith(f"{pkg / (pkg.name + '.toml')}: graphs[0].nodes[0].model: model file not found: m/x.onnx")


# --- every shipped config, as the README runs it --------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
NEEDS = {"cat_finder/image_test.toml": 'cats_dir = "."\n', "cat_finder/video_test.toml": 'videos = ["a.mp4"]\n'}


@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").glob("*/*.toml")
                                          if "\nmain =" in p.read_text()))
def test_every_shipped_config_checks_with_nothing_else(config, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = ["check", f"configs/{config}"]
    if config in NEEDS:
        (tmp_path / "vars.toml").write_text(NEEDS[config])
        args += ["--dynamic", tmp_path / "vars.toml"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "plugins: plugins/" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == "megflow-mp 0.1.0\n"


def test_megflow_run_dump_writes_the_picture_beside_the_config(tmp_path):
    """Run in a child process: running an app makes the process a child subreaper."""
    import subprocess

    plugin = PLUGIN.replace("class CliSource", "class CliSourceD")
    pkg = write_app(tmp_path, {"nodes.py": plugin}, config=CONFIG.replace("CliSource", "CliSourceD"))
    code = "import sys; from megflow_mp.cli import megflow_run; sys.exit(megflow_run(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, "-p", str(pkg), "--dump"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {pkg / (pkg.name + '.svg')}\n")
    assert "<svg" in (pkg / f"{pkg.name}.svg").read_text()
