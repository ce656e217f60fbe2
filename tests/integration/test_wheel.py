"""The package as a user installs it: a wheel, outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.conftest import ROOT


@pytest.mark.slow
def test_the_wheel_carries_the_selfcheck_and_runs_it_without_the_source_tree(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("megflow_mp-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel],
                   check=True, capture_output=True, timeout=300)
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # before the editable install on sys.path
    where = subprocess.run([sys.executable, "-c", "import megflow_mp; print(megflow_mp.__file__)"], cwd=run_dir,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(site)), where
    r = subprocess.run([sys.executable, "-m", "megflow_mp.cli", "selfcheck"], cwd=run_dir, env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "logical_test pass" in r.stdout
    assert "megflow_mp/selfcheck/logical_test/logical_test.toml" in r.stderr.replace(str(site) + "/", "")
    for script in ("megflow-mp", "megflow_run", "megflow_quickstart"):
        assert (site / "bin" / script).exists(), script
