"""Which files an app imports as plugins, seen from the outside: a driver script beside its plugins
runs its job once, `check` runs no script, a module that registers nothing is a warning naming it,
and `plugins = [...]` may name a single `.py` file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.integration.conftest import env, run_cli

NODES = """
from megflow_mp import register


@register(inputs=["inp"], outputs=["out"])
class Double:
    def __init__(self, name, args):
        pass

    def exec(self):
        envelope = self.inp.recv()
        if envelope is not None:
            self.out.send(envelope.repack(envelope.msg * 2))
"""

# MegFlow's style: the script's work at top level, unguarded, and a node type of its own
DRIVER = """
import os
from pathlib import Path

from megflow import Envelope, Graph, block_on, join, register

with open("runs.txt", "a") as f:
    f.write(f"{os.getpid()}\\n")


@register(inputs=["inp"], outputs=["out"])
class AddOne:
    def __init__(self, name, args):
        pass

    def exec(self):
        envelope = self.inp.recv()
        if envelope is not None:
            self.out.send(envelope.repack(envelope.msg + 1))


CONFIG = '''
main = "g"
[[graphs]]
name = "g"
inputs = [{ name = "inp", cap = 4, ports = ["d:inp"] }]
outputs = [{ name = "out", cap = 4, ports = ["a:out"] }]
connections = [{ cap = 4, ports = ["d:out", "a:inp"] }]
nodes = [{ name = "d", ty = "Double" }, { name = "a", ty = "AddOne" }]
'''
g = Graph(config_str=CONFIG, plugin_path=".")
got = []


def send():
    for i in range(5):
        g.input("inp").send(Envelope.pack(i, info={"partial_id": i}))
    g.close()


def recv():
    while (envelope := g.output("out").recv()) is not None:
        got.append(envelope.msg)


block_on(lambda: join([recv, send]))
g.wait()
print("results", sorted(got))
"""

CONFIG = """
{plugins}
main = "g"
[[graphs]]
name = "g"
connections = [{{ cap = 4, ports = ["src:out", "sink:inp"] }}]
nodes = [{{ name = "src", ty = "NoopProducer" }}, {{ name = "sink", ty = "NoopConsumer" }}]
"""

# a script with side effects: each time it is imported or run, a line in ran.txt beside it
SCRIPT = """
from pathlib import Path
with open(Path(__file__).with_name("ran.txt"), "a") as f:
    f.write("ran\\n")
"""

GUARDED = """
from pathlib import Path


def main():
    with open(Path(__file__).with_name("ran.txt"), "a") as f:
        f.write("ran\\n")


if __name__ == "__main__":
    main()
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_driver_script_beside_its_plugins_runs_its_job_once(tmp_path):
    project = write(tmp_path / "proj", {"nodes.py": NODES, "driver.py": DRIVER})
    done = subprocess.run([sys.executable, "driver.py"], cwd=project, capture_output=True, text=True,
                          timeout=120, env=env())
    assert done.returncode == 0, done.stderr
    assert "results [1, 3, 5, 7, 9]" in done.stdout.splitlines()
    assert len(lines(project / "runs.txt")) == 1, done.stderr  # not a second time as a plugin
    assert "registers no node type" not in done.stderr


def test_check_of_a_project_with_a_nodes_folder_runs_no_script_beside_it(tmp_path):
    project = write(tmp_path / "proj", {
        "config.toml": CONFIG.format(plugins='plugins = ["nodes"]'),
        "nodes/double.py": NODES,
        "driver.py": SCRIPT,
    })
    done = run_cli("check", project / "config.toml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{project / 'config.toml'}: ok")
    assert f"plugins: {project / 'nodes'}" in done.stdout
    assert lines(project / "ran.txt") == []
    assert "WARNING" not in done.stderr


def test_check_of_a_folder_of_plugins_warns_of_each_script_and_runs_no_guarded_work(tmp_path):
    project = write(tmp_path / "proj", {
        "config.toml": CONFIG.format(plugins=""),  # no `plugins`: the config's folder holds them
        "double.py": NODES,
        "tool.py": GUARDED,
    })
    done = run_cli("check", project / "config.toml")
    assert done.returncode == 0, done.stderr
    assert lines(project / "ran.txt") == []  # the guarded work did not run
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, done.stderr
    assert "'tool'" in warnings[0] and str(project / "tool.py") in warnings[0]
    assert 'if __name__ == "__main__":' in warnings[0]


def test_an_unguarded_script_in_a_plugin_folder_is_named(tmp_path):
    project = write(tmp_path / "proj", {"config.toml": CONFIG.format(plugins=""), "double.py": NODES,
                                        "stray.py": SCRIPT})
    done = run_cli("check", project / "config.toml")
    assert done.returncode == 0, done.stderr
    assert lines(project / "ran.txt") == ["ran"]  # imported to learn that it registers nothing ...
    assert "plugin module 'stray'" in done.stderr  # ... and named, so it can be guarded or moved


def test_a_py_file_named_in_plugins_is_loaded(tmp_path):
    project = write(tmp_path / "proj", {
        "app/config.toml": CONFIG.replace('"NoopConsumer"', '"Collect"').replace('"NoopProducer"', '"Count", n = 3').format(
            plugins='plugins = ["../lib/collect.py"]'),
        "lib/collect.py": """
            from megflow_mp import Envelope, register


            @register(outputs=["out"])
            class Count:
                def __init__(self, name, args):
                    self.n = int(args["n"])

                def exec(self):
                    for i in range(self.n):
                        self.out.send(Envelope.pack(i))


            @register(inputs=["inp"])
            class Collect:
                def __init__(self, name, args):
                    self.n = 0

                def exec(self):
                    envelope = self.inp.recv()
                    if envelope is not None:
                        self.n += 1
                        print("collected", self.n, flush=True)
        """,
        "lib/other.py": SCRIPT,  # beside the named file, not named: not imported
    })
    done = run_cli("check", project / "app" / "config.toml")
    assert done.returncode == 0, done.stderr
    assert f"plugins: {project / 'lib' / 'collect.py'}" in done.stdout
    done = run_cli("run", project / "app" / "config.toml")
    assert done.returncode == 0, done.stderr
    assert "collected 3" in done.stdout.splitlines()
    assert lines(project / "lib" / "ran.txt") == []
    missing = run_cli("check", project / "app" / "config.toml", "-p", project / "lib" / "nope.py")
    assert missing.returncode == 1 and "plugin file" in missing.stderr and "nope.py" in missing.stderr
