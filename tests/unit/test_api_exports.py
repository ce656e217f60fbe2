"""The public API is pinned: megflow_mp's names, and MegFlow's ``megflow`` import name."""

from __future__ import annotations

import importlib

import megflow_mp

PUBLIC = ["register", "res_register", "Envelope", "yield_now", "sleep", "join", "create_future", "version",
          "__version__", "Graph", "block_on"]
FUNC_OP = ["map_def", "reduce_def", "sink_def", "source_def", "batch_def", "Context"]


def test_megflow_mp_all_is_pinned():
    assert sorted(megflow_mp.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(megflow_mp, name) is not None


def test_version():
    assert megflow_mp.version() == megflow_mp.__version__
    assert all(part.isdigit() for part in megflow_mp.__version__.split("."))


def test_megflow_gives_the_same_objects():
    megflow = importlib.import_module("megflow")
    from megflow import Envelope, create_future, join, register, res_register, sleep, version, yield_now

    assert sorted(megflow.__all__) == sorted(PUBLIC)
    assert (register, res_register, Envelope) == (megflow_mp.register, megflow_mp.res_register, megflow_mp.Envelope)
    assert (yield_now, sleep, join, create_future) == (megflow_mp.yield_now, megflow_mp.sleep, megflow_mp.join,
                                                       megflow_mp.create_future)
    assert version() == megflow_mp.__version__ == megflow.__version__
    from megflow import Graph, block_on

    assert (Graph, block_on) == (megflow_mp.Graph, megflow_mp.block_on)


def test_megflow_func_op():
    from megflow.func_op import batch_def, map_def, reduce_def, sink_def, source_def

    from megflow_mp import func_op

    megflow_func_op = importlib.import_module("megflow.func_op")
    assert sorted(megflow_func_op.__all__) == sorted(FUNC_OP) == sorted(func_op.__all__)
    assert (map_def, reduce_def, sink_def, source_def, batch_def) == (
        func_op.map_def, func_op.reduce_def, func_op.sink_def, func_op.source_def, func_op.batch_def)


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from megflow import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(PUBLIC)


def test_importing_leaves_the_graph_loaders_for_later():
    """``import megflow_mp`` does not import plugin loading or drawing: a Graph imports them when built."""
    import subprocess
    import sys

    code = "import sys, megflow_mp; print(sorted(m for m in ('megflow_mp.plugins', 'megflow_mp.dump') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_testing_harness_is_importable():
    from megflow_mp.testing import FLUSH, run_node  # the harness ships with the library

    assert callable(run_node) and repr(FLUSH) == "FLUSH"


HEAVY = ("pydantic", "jinja2", "fastapi", "starlette", "uvicorn", "av", "cv2", "onnxruntime", "megenginelite",
         "ray")


def test_importing_the_plugin_api_loads_no_heavy_library():
    """What every plugin does first stays light: no config parser, web framework, codec or vision library."""
    import subprocess
    import sys

    probe = ("import sys, megflow, megflow_mp, megflow.func_op; "
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.strip() == "[]"


def test_checking_a_config_loads_no_codec_or_vision_library():
    """``megflow-mp check`` builds the registry of built-in nodes: PyAV and OpenCV are loaded only by
    the processes that decode or draw."""
    import subprocess
    import sys

    probe = ("import sys; from megflow_mp.registry import builtin_registry; builtin_registry(); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'av', 'cv2'}))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.strip() == "[]"


def test_running_an_app_without_ray_imports_no_ray():
    """Ray (the optional cluster backend) is imported only by ``run --ray``."""
    import subprocess
    import sys

    probe = "import sys; from megflow_mp.cli import main; code = main(['selfcheck']); print(code, 'ray' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip().splitlines()[-1] == "0 False", r.stdout + r.stderr
