"""``megflow-mp``: run, check or draw an app.

::

    megflow-mp run   [-c CONFIG] -p PLUGINS [-m PATH ...] [--dynamic VARS.toml]
    megflow-mp check [-c CONFIG] -p PLUGINS ...      # exit 0 when config and plugins are valid
    megflow-mp dump  [-c CONFIG] -p PLUGINS -o graph.svg|.png|.dot

Without ``-c`` the config is ``<PLUGINS>/<dirname>.toml`` (MegFlow's rule). Every user error is
printed as one clear message (file, field, reason) with exit code 1 and no engine traceback; a
plugin that fails to import is shown with its own traceback, which is what its author needs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .config import load_config
from .errors import MegFlowError
from .graph import build_app
from .plugins import load_registry


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="megflow-mp", description="Run MegFlow graphs on processes and shared memory.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run an app"), ("check", "validate config and plugins without running"),
                       ("dump", "draw the built graph")):
        s = sub.add_parser(name, help=text)
        s.add_argument("-c", "--config", help="graph config (default: <plugin dir>/<dirname>.toml)")
        s.add_argument("-p", "--plugin", required=True, help="plugin directory (its .py files and packages are imported)")
        s.add_argument("-m", "--module-path", action="append", default=[], help="extra import path (repeatable)")
        s.add_argument("--dynamic", help="TOML file of variables for a templated config")
        if name == "run":
            s.add_argument("--drain-timeout", type=float, default=30.0,
                           help="seconds Ctrl-C/SIGTERM waits for queued work before stopping (default 30)")
        if name == "dump":
            s.add_argument("-o", "--output", required=True, help="output file: .svg, .png or .dot")
    return p


def config_path(args) -> Path:
    if args.config:
        return Path(args.config)
    plugin = Path(args.plugin)
    return plugin / f"{plugin.resolve().name}.toml"


def load_app(args):
    """Config + plugins -> :class:`~megflow_mp.graph.App`; raises MegFlowError subclasses."""
    path = config_path(args)
    config = load_config(path, dynamic=args.dynamic)
    registry = load_registry(args.plugin, args.module_path)
    return build_app(config, registry, str(path))


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[megflow-mp] %(levelname)s %(message)s", stream=sys.stderr)
    try:
        app = load_app(args)
        if args.command == "check":
            print(f"{config_path(args)}: ok ({len(app.procs)} worker processes, "
                  f"{len(app.templates)} graphs, {len(app.registry.nodes)} node types)")
            return 0
        if args.command == "dump":
            from .dump import write_graph

            write_graph(app, args.output)
            print(f"wrote {args.output}")
            return 0
        from .supervisor import run_app

        return run_app(app, drain_timeout=args.drain_timeout)
    except MegFlowError as exc:
        print(f"megflow-mp: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
