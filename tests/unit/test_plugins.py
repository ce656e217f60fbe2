"""Importing a plugin directory: plain directory or package, failures as PluginError, name clashes."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.isolation import isolated_imports  # noqa: F401

from megflow_mp.errors import PluginError
from megflow_mp.plugins import import_plugins, load_registry
from megflow_mp.registry import builtin_registry

BUILTINS = set(builtin_registry().nodes)


pytestmark = pytest.mark.usefixtures("isolated_imports")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def node(name: str) -> str:
    return f"""
    from megflow import register

    @register(outputs=["out"])
    class {name}:
        def __init__(self, name, args):
            pass
    """


def plugin_types(reg) -> set[str]:
    return set(reg.nodes) - BUILTINS


# --- what is imported -------------------------------------------------------------------------------------


def test_plain_directory(tmp_path):
    root = write(tmp_path / "plain_app", {
        "pl_alpha.py": node("PlAlpha"),
        "pl_pkg/__init__.py": node("PlPkg"),
        "_pl_private.py": "raise RuntimeError('private modules are not imported')\n",
        ".pl_hidden.py": "raise RuntimeError('hidden files are not imported')\n",
        "pl_not_a_package/mod.py": "raise RuntimeError('directories without __init__ are skipped')\n",
        "notes.txt": "not python",
    })
    assert import_plugins(root) == ["pl_alpha", "pl_pkg"]
    assert plugin_types(load_registry(root)) == {"PlAlpha", "PlPkg"}


def test_directory_that_is_a_package(tmp_path):
    root = write(tmp_path / "pk_app", {
        "__init__.py": "from . import _pk_impl\n",
        "_pk_impl.py": node("PkHidden"),
        "pk_one.py": node("PkOne"),
        "pk_sub/__init__.py": node("PkSub"),
    })
    names = import_plugins(root)
    assert names[:3] == ["pk_app", "pk_app.pk_one", "pk_app.pk_sub"]
    assert "pk_app._pk_impl" in names  # imported by the package itself
    assert sys.modules["pk_app.pk_one"].__file__ == str(root / "pk_one.py")
    assert plugin_types(load_registry(root)) == {"PkHidden", "PkOne", "PkSub"}


def test_plain_directory_package_submodules_count(tmp_path):
    root = write(tmp_path / "deep_app", {
        "dp_pkg/__init__.py": "from . import impl\n",
        "dp_pkg/impl.py": node("DpDeep"),
    })
    assert "DpDeep" in load_registry(root).nodes


def test_module_path_is_importable(tmp_path):
    write(tmp_path / "lib", {"mp_helper.py": "VALUE = 41\n"})
    root = write(tmp_path / "mp_app", {"mp_user.py": "import mp_helper\nVALUE = mp_helper.VALUE + 1\n"})
    import_plugins(root, module_path=[str(tmp_path / "lib")])
    assert sys.modules["mp_user"].VALUE == 42
    assert str((tmp_path / "lib").resolve()) in sys.path


def test_no_plugin_dir_gives_only_builtins():
    assert set(load_registry(None).nodes) == BUILTINS


def test_missing_directory(tmp_path):
    with pytest.raises(PluginError, match="does not exist"):
        import_plugins(tmp_path / "nope")


# --- failures ------------------------------------------------------------------------------------------------


def test_syntax_error_names_the_file(tmp_path):
    root = write(tmp_path / "se_app", {"se_ok.py": node("SeOk"), "se_bad.py": "def broken(:\n    pass\n"})
    with pytest.raises(PluginError) as info:
        import_plugins(root)
    err = info.value
    assert err.file == str(root / "se_bad.py")
    assert "SyntaxError" in err.detail
    assert "se_bad" in str(err) and "Traceback" in str(err)


def test_exception_at_import_names_the_file_with_traceback(tmp_path):
    root = write(tmp_path / "ex_app", {"ex_boom.py": "x = 1\nraise RuntimeError('no model file')\n"})
    with pytest.raises(PluginError) as info:
        import_plugins(root)
    err = info.value
    assert err.file == str(root / "ex_boom.py")
    assert "RuntimeError: no model file" in err.detail
    assert 'ex_boom.py", line 2' in err.detail
    assert "failed to import plugin module 'ex_boom'" in str(err)


def test_exception_in_a_helper_names_the_helper(tmp_path):
    write(tmp_path / "lib", {"hx_helper.py": "raise ImportError('missing native lib')\n"})
    root = write(tmp_path / "hx_app", {"hx_user.py": "import hx_helper\n"})
    with pytest.raises(PluginError) as info:
        import_plugins(root, module_path=[str(tmp_path / "lib")])
    assert info.value.file == str((tmp_path / "lib" / "hx_helper.py").resolve())
    assert "missing native lib" in info.value.detail


BAD_REGISTER = """
    from megflow import register

    @register(inputs=["a b"])
    class Bad:
        pass
"""


def test_bad_register_call_is_a_plugin_error(tmp_path):
    root = write(tmp_path / "br_app", {"br_mod.py": BAD_REGISTER})
    with pytest.raises(PluginError, match="bad port declaration 'a b'") as info:
        import_plugins(root)
    assert re.search(rf'File "{re.escape(str(root / "br_mod.py"))}", line [45], in <module>', info.value.detail)


def test_bad_register_call_names_the_plugin_file(tmp_path):
    root = write(tmp_path / "bf_app", {"bf_mod.py": BAD_REGISTER})
    with pytest.raises(PluginError) as info:
        import_plugins(root)
    assert info.value.file == str(root / "bf_mod.py")


# --- the same module name in two plugin directories -----------------------------------------------------------


def test_same_module_name_in_two_dirs_loads_the_right_file(tmp_path):
    one = write(tmp_path / "one", {"sm_common.py": node("SmOne") + "WHO = 'one'\n"})
    two = write(tmp_path / "two", {"sm_common.py": node("SmTwo") + "WHO = 'two'\n"})
    assert "SmOne" in load_registry(one).nodes
    reg = load_registry(two)
    assert sys.modules["sm_common"].WHO == "two"
    assert "SmTwo" in reg.nodes


def test_same_module_name_in_two_dirs_forgets_the_first(tmp_path):
    one = write(tmp_path / "one", {"sf_common.py": node("SfOne")})
    two = write(tmp_path / "two", {"sf_common.py": node("SfTwo")})
    load_registry(one)
    assert plugin_types(load_registry(two)) == {"SfTwo"}


# --- which modules count: the program's own file, modules that register nothing, single files --------------


def test_the_running_programs_own_file_is_not_imported(tmp_path, monkeypatch):
    root = write(tmp_path / "own_app", {
        "own_nodes.py": node("OwnNode"),
        "own_driver.py": "raise RuntimeError('the program imported itself as a plugin')\n",
    })
    monkeypatch.setattr(sys, "argv", [str(root / "own_driver.py")])
    assert import_plugins(root) == ["own_nodes"]
    monkeypatch.setattr(sys, "argv", ["x"])
    monkeypatch.setattr(sys.modules["__main__"], "__file__", str(root / "." / "own_driver.py"), raising=False)
    assert import_plugins(root) == ["own_nodes"]
    assert import_plugins(root / "own_driver.py") == []  # named alone: still the program


def test_a_module_that_registers_nothing_is_one_warning_naming_it(tmp_path, caplog):
    root = write(tmp_path / "idle_app", {
        "idle_nodes.py": node("IdleNode"),
        "idle_script.py": "print('a script run at import')\n",
    })
    with caplog.at_level("WARNING", logger="megflow_mp.plugins"):
        assert import_plugins(root) == ["idle_nodes", "idle_script"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "'idle_script'" in lines[0] and str(root / "idle_script.py") in lines[0]
    assert 'if __name__ == "__main__":' in lines[0] and "registers no node type" in lines[0]


def test_helpers_used_by_the_nodes_and_packages_of_nodes_are_no_warning(tmp_path, caplog):
    root = write(tmp_path / "help_app", {
        "aa_consts.py": "LABELS = ['person', 'car']\n",      # imported before its user, used through a list
        "hp_nodes.py": "from aa_consts import LABELS\nimport zz_tools\n" + textwrap.dedent(node("HpNode")),
        "zz_tools.py": "def area(b):\n    return b[2] * b[3]\n",
        "hp_pkg/__init__.py": "from . import impl\n",       # registers through a submodule
        "hp_pkg/impl.py": node("HpImpl"),
    })
    with caplog.at_level("WARNING", logger="megflow_mp.plugins"):
        assert {"HpNode", "HpImpl"} <= set(load_registry(root).nodes)
    assert caplog.records == []


def test_a_package_plugin_dir_warns_for_its_idle_module(tmp_path, caplog):
    root = write(tmp_path / "pw_app", {"__init__.py": "", "pw_one.py": node("PwOne"), "pw_stray.py": "X = 1\n"})
    with caplog.at_level("WARNING", logger="megflow_mp.plugins"):
        import_plugins(root)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["plugin module 'pw_app.pw_stray'"]


def test_a_single_py_file_is_a_plugin_path(tmp_path, caplog):
    root = write(tmp_path / "sf_dir", {"sf_single.py": node("SfSingle"), "sf_other.py": node("SfOther")})
    assert import_plugins(root / "sf_single.py") == ["sf_single"]
    assert plugin_types(load_registry([root / "sf_single.py"])) == {"SfSingle"}
    with pytest.raises(PluginError, match="plugin file .* does not exist"):
        import_plugins(root / "sf_missing.py")
    write(tmp_path / "sf_dir", {"sf_none.py": "Y = 2\n"})
    with caplog.at_level("WARNING", logger="megflow_mp.plugins"):
        import_plugins(root / "sf_none.py")
    assert "'sf_none'" in caplog.records[0].getMessage()
