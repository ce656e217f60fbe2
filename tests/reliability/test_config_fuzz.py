"""Config fuzzing: the shipped configs (configs/), broken by hypothesis, through ``megflow-mp check``.
Each case must be valid or give exactly one clear error line naming the file and the field (or
line); no traceback, no hang."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, given, settings

from tests.reliability.config_checker import Checker, classify
from tests.reliability.config_mutations import MAIN, VARS, cases
from tests.reliability.servers import cli_env

ROOT = Path(__file__).resolve().parents[2]
SECTION = "Config fuzzing (hypothesis on configs/, through `megflow-mp check`)"
LOST = ("traceback", "unclear error", "hang", "crash")


def shipped_configs(checker: Checker) -> list[tuple[str, str]]:
    """(configs/<app>/<file>, text) of every shipped config that passes check as it is."""
    seeds = []
    for path in sorted((ROOT / "configs").glob("*/*.toml")):
        rc, *_ = checker.check(["check", str(path)])
        if rc == 0:
            seeds.append((str(path.relative_to(ROOT)), path.read_text()))
    return seeds


@pytest.fixture(scope="session")
def seeds() -> list[tuple[str, str]]:
    checker = Checker(str(ROOT))
    try:
        found = shipped_configs(checker)
    finally:
        checker.close()
    assert found, "no shipped config passes check"
    return found


def workspace(tmp_path: Path) -> Path:
    """A copy of configs/ beside a link to plugins/, so each config's relative paths (its includes,
    its ``plugins``) resolve as in the repository; models/ is found from the working directory."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (tmp_path / "plugins").symlink_to(ROOT / "plugins")
    return tmp_path / "configs"


def write_case(space: Path, seed: str, config, extra: dict) -> list[str]:
    folder = space / Path(seed).parent.name
    main = folder / MAIN
    (main.write_bytes if isinstance(config, bytes) else main.write_text)(config)
    written = [str(main)]
    for name, text in extra.items():
        (folder / name).write_text(text)
        written.append(str(folder / name))
    return written


def check_argv(files: list[str]) -> list[str]:
    dynamic = [f for f in files if f.endswith(VARS)]
    return ["check", files[0]] + (["--dynamic", dynamic[0]] if dynamic else [])


def clear_extra(space: Path, seed: str, extra: dict) -> None:
    for name in extra:
        (space / Path(seed).parent.name / name).unlink()


def test_mutated_configs_are_valid_or_one_clear_error(tmp_path, figures, sizes, seeds):
    space = workspace(tmp_path)
    checker = Checker(str(ROOT))
    outcomes: Counter = Counter()
    examples: dict[str, list[str]] = {}
    by_seed: Counter = Counter()
    try:
        @settings(max_examples=sizes.config_cases, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
        @given(cases(seeds))
        def run(case):
            index, config, extra, done = case
            seed = seeds[index][0]
            files = write_case(space, seed, config, extra)
            kind, line = classify(*checker.check(check_argv(files)), files)
            clear_extra(space, seed, extra)
            outcomes[kind] += 1
            by_seed[Path(seed).parent.name] += 1
            shown = examples.setdefault(kind, [])
            reason = line.split(": ")[-1][:40]  # one example per kind of message
            if kind in LOST and len(shown) < 8 and not any(reason in e for e in shown):
                shown.append(f"{seed} after {'; '.join(done)}: {line[:300]}")

        run()
    finally:
        checker.close()
    tried = sum(outcomes.values())
    lost = sum(outcomes[k] for k in LOST)
    figures.add(SECTION, f"mutated configs checked in-process (cli.main), {len(seeds)} shipped configs as "
                         f"seeds: valid or one clear error line naming file and field", tried, tried - lost, lost,
                [f"outcomes {dict(outcomes)}; per app {dict(by_seed)}"]
                + [f"{k}: {e}" for k, lst in examples.items() for e in lst])
    assert lost == 0, examples


def test_mutated_configs_through_a_real_check_process(tmp_path, figures, sizes, seeds):
    """The same, through ``python -m megflow_mp.cli check`` in a process of its own."""
    space = workspace(tmp_path)
    outcomes: Counter = Counter()
    examples: list[str] = []

    @settings(max_examples=sizes.config_subprocess, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @given(cases(seeds))
    def run(case):
        index, config, extra, done = case
        seed = seeds[index][0]
        files = write_case(space, seed, config, extra)
        try:
            r = subprocess.run([sys.executable, "-m", "megflow_mp.cli", *check_argv(files)], capture_output=True,
                               text=True, timeout=60, env=cli_env(), cwd=ROOT)
            tb = r.stderr if "Traceback (most recent call last)" in r.stderr else None
            kind, line = classify(r.returncode, r.stdout, r.stderr, tb, None, files)
        except subprocess.TimeoutExpired:
            kind, line = "hang", ""
        clear_extra(space, seed, extra)
        outcomes[kind] += 1
        if kind in LOST and len(examples) < 5:
            examples.append(f"{seed} after {'; '.join(done)}: {kind}: {line[:300]}")

    run()
    tried = sum(outcomes.values())
    lost = sum(outcomes[k] for k in LOST)
    figures.add(SECTION, "mutated configs through a real `megflow-mp check` process", tried, tried - lost, lost,
                [f"outcomes {dict(outcomes)}"] + examples)
    assert lost == 0, examples
