"""``megflow-mp schema``: a valid JSON Schema (Draft 2020-12) that every shipped config satisfies,
that refuses what ``check`` refuses in node arguments, and that carries the plugins' declared ones."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from tests.support.isolation import isolated_imports  # noqa: F401

from megflow_mp.cli import main
from megflow_mp.config.json_schema import config_schema
from megflow_mp.config.loader import _render
from megflow_mp.plugins import load_registry
from megflow_mp.registry import builtin_registry

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*/*.toml"))
REQUIRED_VARS = {"cats_dir": "/tmp", "videos": ["/tmp/a.mp4"]}  # what image_test/video_test need given

pytestmark = pytest.mark.usefixtures("isolated_imports")


def cases() -> list[tuple[Path, Path | None]]:
    out = []
    for config in CONFIGS:
        out.append((config, None))
        out += [(config, v) for v in sorted((config.parent / "vars").glob("*.toml"))]
    return out


def rendered(config: Path, variables: Path | None) -> dict:
    """The TOML document of ``config`` as the loader reads it: rendered when it is a template."""
    text = config.read_text()
    given = dict(REQUIRED_VARS)
    if variables is not None:
        given.update(tomllib.loads(variables.read_text()))
    if variables is not None or "{{" in text or "{%" in text:
        text = _render(text, str(config), given)
    return tomllib.loads(text)


@pytest.fixture(scope="module")
def schema_of_builtins() -> dict:
    return config_schema(builtin_registry())


def test_the_schema_command_writes_a_valid_draft_2020_12_schema(tmp_path, capsys):
    out = tmp_path / "megflow.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    schema = json.loads(out.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    rules = {r["if"]["properties"]["ty"]["const"] for r in schema["$defs"]["Node"]["allOf"]}
    assert rules == set(builtin_registry().nodes)  # every built-in type: its arguments, no others
    capsys.readouterr()
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema


@pytest.mark.parametrize("config, variables", cases(),
                         ids=lambda p: p.relative_to(ROOT).as_posix() if isinstance(p, Path) else "defaults")
def test_every_shipped_config_is_valid_by_the_schema_and_by_check(config, variables, tmp_path, capsys):
    doc = rendered(config, variables)
    plugins = [Path(config.parent, p) for p in doc.get("plugins", [])]
    registry = load_registry(plugins)  # the built-in types and the config's plugins
    errors = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft202012Validator(config_schema(registry))
              .iter_errors(doc)]
    assert errors == []
    if "main" not in doc:
        return  # a file other configs include: checked through them
    argv = ["check", str(config)]
    if variables is not None:
        argv += ["--dynamic", str(variables)]
    elif set(REQUIRED_VARS) & set(_undeclared(config)):
        vars_file = tmp_path / "vars.toml"
        vars_file.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in REQUIRED_VARS.items()))
        argv += ["--dynamic", str(vars_file)]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err


def _undeclared(config: Path) -> list[str]:
    text = config.read_text()
    return [k for k in REQUIRED_VARS if k in text]


@pytest.mark.parametrize("node, says", [
    ('{ name = "v", ty = "VideoServer", prot = 8095 }', "'prot' was unexpected"),
    ('{ name = "v", ty = "VideoServer", port = "8095" }', "is not of type 'integer'"),
    ('{ name = "v", ty = "VideoServer", port = 70000 }', "is greater than the maximum"),
    ('{ name = "v", ty = "ImageServer", response = "xml" }', "is not one of"),
    ('{ name = "t", ty = "Transform", anything = 1 }', "'anything' was unexpected"),
])
def test_the_schema_refuses_what_check_refuses_in_node_arguments(schema_of_builtins, node, says):
    doc = tomllib.loads(f'main = "g"\n[[graphs]]\nname = "g"\nnodes = [{node}]\n')
    errors = [e.message for e in jsonschema.Draft202012Validator(schema_of_builtins).iter_errors(doc)]
    assert any(says in m for m in errors), errors


def test_engine_keys_subgraph_nodes_and_free_form_plugins_pass(schema_of_builtins):
    doc = tomllib.loads(textwrap.dedent('''
        main = "g"
        [[graphs]]
        name = "g"
        nodes = [
          { name = "t", ty = "Transform", cloned = 2, restart = 1, placement = { num_cpus = 1 }, res = [] },
          { name = "sub", ty = "OtherGraph", times = 3 },
          { name = "p", ty = "SomePluginType", anything = { a = 1 } },
        ]
        '''))
    assert list(jsonschema.Draft202012Validator(schema_of_builtins).iter_errors(doc)) == []


def test_the_schema_carries_the_declared_arguments_of_the_plugins_given(tmp_path, capsys):
    plugin = tmp_path / "nodes" / "schema_blur.py"
    plugin.parent.mkdir()
    plugin.write_text(textwrap.dedent('''
        from pydantic import Field
        from megflow_mp import register
        from megflow_mp.nodeargs import NodeArgs


        class BlurArgs(NodeArgs):
            k: int = Field(31, ge=1, description="kernel size")


        @register(inputs=["inp"], outputs=["out"], args=BlurArgs)
        class SchemaBlur:
            def __init__(self, name, args):
                self.k = BlurArgs.of(args).k

            def exec(self):
                pass
        '''))
    out = tmp_path / "s.json"
    assert main(["schema", "-p", str(plugin.parent), "-o", str(out)]) == 0
    schema = json.loads(out.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    ok = tomllib.loads('main = "g"\n[[graphs]]\nname = "g"\nnodes = [{ name = "b", ty = "SchemaBlur", k = 5 }]\n')
    assert list(validator.iter_errors(ok)) == []
    bad = tomllib.loads('main = "g"\n[[graphs]]\nname = "g"\nnodes = [{ name = "b", ty = "SchemaBlur", kk = 5 }]\n')
    assert any("'kk' was unexpected" in e.message for e in validator.iter_errors(bad))
    capsys.readouterr()
    assert main(["schema", "-p", str(tmp_path / "missing")]) == 1
    assert "no such plugin directory" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["custom", "image", "modelserving", "video"])
def test_a_quickstart_project_names_its_schema_and_its_config_satisfies_it(tmp_path, kind, capsys):
    from megflow_mp.quickstart import main as quickstart

    target = tmp_path / "app"
    model = ROOT / "models" / "mobilenet_v2_1.0_224_fp32.onnx"
    argv = ["--path", str(target), "--type", kind, "--yes"] + (["--model", str(model)] if kind == "modelserving" else [])
    assert quickstart(argv) == 0, capsys.readouterr().err
    config = (target / "config.toml").read_text()
    assert config.startswith("#:schema ./megflow.schema.json\n")
    schema = json.loads((target / "megflow.schema.json").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(tomllib.loads(config))) == []
