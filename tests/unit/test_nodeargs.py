"""Node arguments: every built-in type declares them, ``check`` refuses a typo (with the closest known
one), a wrong type or a value out of bounds; plugin types that declare theirs get the same checks,
those that declare nothing keep free-form arguments; subgraph nodes' passed-down arguments pass.

The typo test is generated from the builtin registry: a new built-in node type is covered (and
fails here when it declares no arguments) without anyone writing a case for it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from tests.support.isolation import isolated_imports  # noqa: F401

from megflow_mp.cli import main
from megflow_mp.errors import PluginError
from megflow_mp.nodeargs import ENGINE_KEYS, NodeArgs, args_problem, arg_rows
from megflow_mp.registry import builtin_registry, register

BUILTINS = builtin_registry().nodes

pytestmark = pytest.mark.usefixtures("isolated_imports")


def check(capsys, path: Path, *extra) -> tuple[int, str]:
    code = main(["check", str(path), *map(str, extra)])
    out, err = capsys.readouterr()
    return code, (err or out).strip()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def one_node_config(ty: str, entry: str = "") -> str:
    """A config whose graph ``g`` holds one node of type ``ty`` (with ``entry`` added to it) and, for
    the types that create per-stream subgraph instances, the subgraph they feed; its required
    arguments (strings) are given."""
    ntype = BUILTINS[ty]
    required = [f'{name} = "http://127.0.0.1:9/x"' for name, field in ntype.args.model_fields.items()
                if field.is_required() and field.annotation is str]  # a URL and a path alike
    extra = "".join(f", {e}" for e in required + ([entry] if entry else []))
    if ntype.dynamic_outputs:
        return f'''
main = "g"
[[graphs]]
name = "s"
inputs = [{{ name = "inp", cap = 4, ports = ["t:inp"] }}]
outputs = [{{ name = "out", cap = 4, ports = ["t:out"] }}]
nodes = [{{ name = "t", ty = "Transform" }}]
[[graphs]]
name = "g"
nodes = [{{ name = "n", ty = "{ty}"{extra} }}, {{ name = "sub", ty = "s" }}]
connections = [{{ cap = 4, ports = ["n:out", "sub:inp"] }}, {{ cap = 4, ports = ["sub:out", "n:inp"] }}]
'''
    return f'''
main = "g"
[[graphs]]
name = "g"
nodes = [{{ name = "n", ty = "{ty}"{extra} }}]
'''


def misspell(word: str) -> str:
    """``word`` with two letters swapped (``port`` -> ``prot``), or a letter doubled when that is the same."""
    for i in range(1, len(word) - 1):
        if word[i] != word[i + 1]:
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:1] + word[0] + word[1:]


def typo_case(ty: str) -> tuple[str, str]:
    """``(argument, its misspelling)`` for type ``ty``: the first declared argument whose misspelling
    is no other argument, else an engine key (a type without arguments)."""
    fields = list(BUILTINS[ty].args.model_fields)
    for name in fields + ["restart", "cloned"]:
        wrong = misspell(name)
        if wrong not in fields and wrong not in ENGINE_KEYS:
            return name, wrong
    raise AssertionError(f"no argument of {ty} to misspell")  # pragma: no cover


@pytest.mark.parametrize("ty", sorted(BUILTINS))
def test_every_builtin_type_declares_its_arguments(ty):
    model = BUILTINS[ty].args
    assert model is not None, f"{ty} declares no arguments: give @register(args=...) a NodeArgs model"
    assert issubclass(model, NodeArgs)
    for name, field in model.model_fields.items():
        assert field.description, f"{ty}.{name} has no description (the reference's meaning column)"


@pytest.mark.parametrize("ty", sorted(BUILTINS))
def test_a_misspelled_argument_of_every_builtin_type_is_refused_with_a_suggestion(tmp_path, capsys, ty):
    if BUILTINS[ty].args is None:
        pytest.fail(f"{ty} declares no arguments")
    good = write(tmp_path / "good.toml", one_node_config(ty))
    code, message = check(capsys, good)
    assert code == 0, message
    arg, wrong = typo_case(ty)
    bad = write(tmp_path / "app.toml", one_node_config(ty, f"{wrong} = 1"))
    code, message = check(capsys, bad)
    assert code == 1
    assert message == (f"megflow-mp: error: {bad}: graphs[{1 if BUILTINS[ty].dynamic_outputs else 0}].nodes[0]."
                       f"{wrong}: unknown argument {wrong!r} of {ty} 'n'; did you mean {arg!r}?")


@pytest.mark.parametrize("entry, where, says", [
    ('port = "8080"', "port", "expected an integer, got '8080'"),
    ("port = 70000", "port", "must be <= 65535, got 70000"),
    ("host = 1", "host", "expected a string, got 1"),
    ("max_pending = 0", "max_pending", "must be >= 1, got 0"),
    ('on_error = "ignore"', "on_error", "expected 'reply' or 'exit', got 'ignore'"),
    ('response = "xml"', "response", "expected 'image' or 'json', got 'xml'"),
    ("insecure = 1", "insecure", "expected true or false, got 1"),
])
def test_a_wrong_type_or_value_is_refused_at_its_argument(tmp_path, capsys, entry, where, says):
    bad = write(tmp_path / "app.toml", one_node_config("ImageServer", entry))
    code, message = check(capsys, bad)
    assert code == 1
    assert message == f"megflow-mp: error: {bad}: graphs[0].nodes[0].{where}: {says}"


@pytest.mark.parametrize("entry, where, says", [
    ("queue_size = 0", "queue_size", "must be >= 1, got 0"),
    ("read_timeout = -1", "read_timeout", "must be > 0, got -1"),
    ("allow_dirs = 3", "allow_dirs", "expected a list, got 3"),
    ('allow_hosts = ["a b"]', "allow_hosts", "'a b' is not a host name"),
    ('streams = [{ id = "gate", url = "rtsp://h/s", read_timout = 3 }]', "streams[0].read_timout",
     "unknown field 'read_timout'; did you mean 'read_timeout'?"),
    ('streams = [{ id = "7", url = "rtsp://h/s" }]', "streams[0].id", "a stream id of digits only"),
    ('streams = [{ id = "a", url = "rtsp://h/1" }, { id = "a", url = "rtsp://h/2" }]', "streams",
     "stream id 'a' is declared twice"),
])
def test_video_server_arguments_are_checked_inside_lists_and_tables(tmp_path, capsys, entry, where, says):
    bad = write(tmp_path / "app.toml", one_node_config("VideoServer", entry))
    code, message = check(capsys, bad)
    assert code == 1
    assert message.startswith(f"megflow-mp: error: {bad}: graphs[1].nodes[0].{where}: ")
    assert says in message


def test_an_unknown_argument_with_nothing_close_lists_what_the_type_takes():
    problem = args_problem(BUILTINS["Reorder"].args, {"zzz": 1}, "Reorder 'r'")
    assert problem == (("zzz",), "unknown argument 'zzz' of Reorder 'r' (it takes: start)")
    problem = args_problem(BUILTINS["Transform"].args, {"zzz": 1}, "Transform 't'")
    assert problem == (("zzz",), "unknown argument 'zzz' of Transform 't' (it takes no arguments)")


def test_engine_keys_and_a_subgraph_nodes_passed_down_arguments_are_not_flagged(tmp_path, capsys):
    app = write(tmp_path / "app.toml", '''
        main = "g"
        [[graphs]]
        name = "s"
        inputs = [{ name = "inp", cap = 4, ports = ["t:inp"] }]
        outputs = [{ name = "out", cap = 4, ports = ["t:out"] }]
        nodes = [{ name = "t", ty = "Transform", cloned = 2, restart = 3, placement = { num_cpus = 1 } }]
        [[graphs]]
        name = "g"
        nodes = [
          { name = "src", ty = "NoopProducer", res = [] },
          { name = "sub", ty = "s", times = 3, anything = "passed down" },
          { name = "sink", ty = "NoopConsumer" },
        ]
        connections = [{ cap = 4, ports = ["src:out", "sub:inp"] }, { cap = 4, ports = ["sub:out", "sink:inp"] }]
        ''')
    code, message = check(capsys, app)
    assert code == 0, message


def test_a_node_reads_its_arguments_validated_and_ignores_passed_down_ones():
    from megflow_mp.nodes.video_args import VideoServerArgs

    args = VideoServerArgs.of({"name": "v", "port": 9000, "allow_dirs": ".", "times": 3}, "VideoServer 'v'")
    assert (args.port, args.allow_dirs, args.host) == (9000, ["."], "127.0.0.1")
    with pytest.raises(ValueError, match=r"^VideoServer 'v': port: expected an integer, got '9000'$"):
        VideoServerArgs.of({"port": "9000"}, "VideoServer 'v'")
    with pytest.raises(ValueError, match=r"^argument port: expected an integer, got '9000'$"):
        VideoServerArgs.of({"port": "9000"})


PLUGIN = '''
from pydantic import Field

from megflow_mp import register
from megflow_mp.nodeargs import NodeArgs


class BlurArgs(NodeArgs):
    k: int = Field(31, ge=1, description="kernel size")
    sigma: float = Field(0, ge=0, description="0: from k")


@register(inputs=["inp"], outputs=["out"], args=BlurArgs)
class Blur:
    def __init__(self, name, args):
        self.args = BlurArgs.of(args, f"Blur {name!r}")

    def exec(self):
        pass


@register(inputs=["inp"], outputs=["out"])
class FreeForm:
    def __init__(self, name, args):
        self.args = args

    def exec(self):
        pass
'''


def plugin_app(tmp_path: Path, ty: str, entry: str) -> Path:
    write(tmp_path / "nodes" / "blur_nodes.py", PLUGIN)
    return write(tmp_path / "app.toml", f'''
        plugins = ["nodes"]
        main = "g"
        [[graphs]]
        name = "g"
        nodes = [{{ name = "b", ty = "{ty}", {entry} }}]
        ''')


@pytest.mark.parametrize("entry, says", [
    ("kk = 3", "kk: unknown argument 'kk' of Blur 'b'; did you mean 'k'?"),
    ('k = "3"', "k: expected an integer, got '3'"),
    ("k = 0", "k: must be >= 1, got 0"),
])
def test_a_plugin_type_with_declared_arguments_gets_the_same_checks(tmp_path, capsys, entry, says):
    app = plugin_app(tmp_path, "Blur", entry)
    code, message = check(capsys, app)
    assert code == 1
    assert message == f"megflow-mp: error: {app}: graphs[0].nodes[0].{says}"


def test_a_plugin_type_that_declares_nothing_keeps_free_form_arguments(tmp_path, capsys):
    code, message = check(capsys, plugin_app(tmp_path, "FreeForm", "kk = 3, anything = { a = 1 }"))
    assert code == 0, message
    code, message = check(capsys, plugin_app(tmp_path, "Blur", "k = 5, sigma = 1.5"))
    assert code == 0, message


def test_a_plugin_node_reads_its_validated_arguments(tmp_path):
    import importlib
    import sys

    write(tmp_path / "reading_blur.py", PLUGIN)
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("reading_blur")
    finally:
        sys.path.remove(str(tmp_path))
    node = module.Blur("b", {"name": "b", "k": 5, "passed_down": 1})
    assert (node.args.k, node.args.sigma) == (5, 0)


def test_register_refuses_args_that_are_not_a_model():
    with pytest.raises(PluginError, match="args must be a pydantic model class"):
        register(inputs=["inp"], args={"k": int})(type("Bad", (), {"exec": lambda self: None}))


def test_a_plain_pydantic_model_is_accepted_and_checked_too():
    class Plain(BaseModel):
        k: int = Field(1, description="k")

    assert args_problem(Plain, {"kk": 1}, "P 'p'") == (("kk",), "unknown argument 'kk' of P 'p'; did you mean 'k'?")
    assert args_problem(Plain, {"k": 2}, "P 'p'") is None


def test_the_reference_rows_say_type_default_and_meaning():
    rows = {r[0]: r[1:] for r in arg_rows(BUILTINS["VideoServer"].args)}
    assert rows["port"] == ("int >= 0, <= 65535", "8080", "TCP port to listen on (0: any free one)")
    assert rows["on_error"][:2] == ('"restart" | "end"', "none")
    assert rows["allow_dirs"][:2] == ("str or list[str]", "[]")
    assert rows["streams"][0] == "list[table]"
