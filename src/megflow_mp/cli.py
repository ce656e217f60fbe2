"""The command line: ``megflow-mp`` and MegFlow's own ``megflow_run`` / ``megflow_quickstart``.

::

    megflow-mp run   CONFIG [-p PLUGINS ...] [-m PATH ...] [--dynamic VARS.toml] [--drain-timeout S]
                     [--metrics-port N] [--no-metrics]   # /metrics and /dashboard (see megflow_mp.observe)
                     [--auth-tokens FILE] [--metrics-host H] [--metrics-auth] [--metrics-insecure]
    megflow-mp token add NAME --role viewer|operator --file F | list --file F | revoke NAME --file F
    megflow-mp check CONFIG ...                # exit 0 when config, plugins and model files are usable
    megflow-mp dump  CONFIG ... [-o graph.svg|.png|.dot]   # default: <config>.svg beside the config
    megflow-mp selfcheck                       # the bundled logical_test: prints "logical_test pass"
    megflow-mp nodes                           # the reference of the built-in node types (docs/nodes.md)
    megflow-mp schema [-o FILE] [-p PLUGINS ...]           # the config's JSON Schema, for editors
    megflow-mp quickstart [--path P --type T ...]          # create a project (MegFlow's quickstart)
    megflow_run -p PLUGINS [-c CONFIG] [-m PATH] [--dynamic VARS] [--dump]   # MegFlow's flags

Which config and which plugin directories: :mod:`megflow_mp.project` (``-p`` overrides the config's
``plugins``; MegFlow's ``-p DIR`` alone means ``DIR/<dirname>.toml``). Every user error is printed as
one clear message (file, field, reason) with exit code 1 and no engine traceback; a plugin that fails
to import is shown with its own traceback, which is what its author needs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .errors import MegFlowError, UsageError

_COMMANDS = (("run", "run an app"), ("check", "validate config, plugins and model files without running"),
             ("dump", "draw the built graph"))


def _app_arguments(s: argparse.ArgumentParser, megflow_run: bool = False) -> None:
    if not megflow_run:
        s.add_argument("config_pos", nargs="?", metavar="CONFIG", help="graph config (.toml)")
    s.add_argument("-c", "--config", help="graph config (default: <plugin dir>/<dirname>.toml)")
    s.add_argument("-p", "--plugin", action="append", default=[],
                   help="plugin directory, repeatable (default: the config's `plugins`, else the config's "
                        "own directory when it holds .py files)")
    s.add_argument("-m", "--module-path", "--module_path", action="append", default=[],
                   help="extra import path (repeatable)")
    s.add_argument("--dynamic", help="TOML file of variables for a templated config")


def _run_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--drain-timeout", type=float, default=30.0,
                   help="seconds Ctrl-C/SIGTERM waits for queued work before stopping (default 30)")
    s.add_argument("--metrics-port", type=int, metavar="N",
                   help="serve /metrics (Prometheus) and /dashboard on this port (front doors serve them anyway)")
    s.add_argument("--no-metrics", action="store_true", help="collect no metrics (no /metrics, no /dashboard)")
    s.add_argument("--metrics-host", metavar="HOST",
                   help="address --metrics-port listens on (default 127.0.0.1; another needs --metrics-auth or "
                        "--metrics-insecure)")
    s.add_argument("--metrics-auth", action="store_true",
                   help="the metrics port takes the app's tokens too (viewer or operator; /healthz, /readyz open)")
    s.add_argument("--metrics-insecure", action="store_true",
                   help="let --metrics-host other than loopback serve without auth (a warning at start)")
    s.add_argument("--auth-tokens", metavar="FILE",
                   help="protect every front door with this tokens file (as the config's [auth] tokens; this wins)")
    s.add_argument("--state-dir", metavar="DIR",
                   help="where VideoServers record the streams started over HTTP, to start them again with the app "
                        "(default: $XDG_STATE_HOME/megflow-mp/<config>-<hash>; a node's state_dir wins)")
    s.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster: 'auto' (the cluster this machine belongs to, or RAY_ADDRESS), "
                        "HOST:PORT, or 'local' (a one-machine cluster for this run); nodes go where their "
                        "`placement` says (needs megflow-mp[ray])")
    s.add_argument("--ray-wait", type=float, default=60.0, metavar="S",
                   help="with --ray: seconds to wait for the resources of a placement the cluster has but cannot "
                        "give now (default 60), then fail")


def _settings(args) -> None:
    """Metrics settings of ``run`` (binds ``--metrics-port`` now: a port in use is an error before any fork),
    and ``--state-dir``, which the workers inherit through the environment (:mod:`.video.state`)."""
    from .observe import configure

    if getattr(args, "state_dir", None):
        from .video.state import ENV

        os.environ[ENV] = str(Path(args.state_dir).resolve())

    tokens = getattr(args, "tokens", None)
    port = None if args.no_metrics else args.metrics_port
    if port is not None:
        from .auth import check_exposed

        if args.metrics_auth and not tokens:
            raise UsageError("--metrics-auth needs a tokens file: [auth] tokens in the config or --auth-tokens FILE")
        if args.metrics_insecure and not args.metrics_auth:
            check_exposed("--metrics-port", args.metrics_host or "127.0.0.1", True, None)
        elif not args.metrics_auth and not _loopback(args.metrics_host):
            raise UsageError(f"--metrics-host {args.metrics_host} is reachable from other machines without auth: add "
                             "--metrics-auth (with [auth] tokens or --auth-tokens FILE) or --metrics-insecure")
    configure(enabled=False if args.no_metrics else None, port=port, host=args.metrics_host,
              auth=tokens if args.metrics_auth else None)


def _loopback(host) -> bool:
    from .auth import is_loopback

    return host is None or is_loopback(host)


def _auth(app, args):
    """``app`` with the tokens of ``--auth-tokens`` when given; every front door refused for serving
    other machines without auth is an error now (one line each), before anything starts."""
    import dataclasses

    from .auth import exposure_problems

    if getattr(args, "auth_tokens", None):
        tokens = str(Path(args.auth_tokens).resolve())
        if not Path(tokens).is_file():
            raise UsageError(f"--auth-tokens {args.auth_tokens}: no such file (create it: megflow-mp token add NAME "
                             f"--role operator --file {args.auth_tokens})")
        if getattr(args, "ray", None):
            raise UsageError("--auth-tokens does not reach a Ray cluster's machines: give [auth] tokens in the config")
        app = dataclasses.replace(app, auth=tokens)
    problems = exposure_problems(app, app.auth)
    if problems:
        from .errors import AuthError

        raise AuthError("\n".join(problems))
    args.tokens = app.auth
    return app


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="megflow-mp", description="Run MegFlow graphs on processes and shared memory.")
    p.add_argument("--version", action="version", version=f"megflow-mp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in _COMMANDS:
        s = sub.add_parser(name, help=text, description=text)
        _app_arguments(s)
        if name == "run":
            _run_arguments(s)
        if name == "dump":
            s.add_argument("-o", "--output", help="output file: .svg, .png or .dot (default: <config>.svg)")
    sub.add_parser("nodes", help="print the reference of the built-in node types (Markdown)",
                   description="Print every built-in node type: its ports, what it does, its arguments.")
    s = sub.add_parser("schema", help="write the JSON Schema of a config (for editors: taplo, Even Better TOML)",
                       description="Write the JSON Schema of a config file: the built-in node types' arguments and, "
                                   "with -p, those the plugins declare. A TOML file whose first line is "
                                   "'#:schema ./megflow.schema.json' is then validated and completed by the editor.")
    s.add_argument("-o", "--output", help="file to write (default: standard output)")
    s.add_argument("-p", "--plugin", action="append", default=[], help="plugin directory or .py file (repeatable)")
    s.add_argument("-m", "--module-path", "--module_path", action="append", default=[],
                   help="extra import path (repeatable)")
    from .auth.cli import add_parser as add_token_parser

    add_token_parser(sub)
    sub.add_parser("selfcheck", help="run the bundled logical_test (the engine's self-check)",
                   description="Run the bundled logical_test graph; prints 'logical_test pass'.")
    # its own parser (megflow_mp.quickstart) reads the rest of the line: see main()
    sub.add_parser("quickstart", help="create a new app project from a template (see: quickstart --help)",
                   add_help=False)
    return p


def _megflow_run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="megflow_run", description="Run a MegFlow graph (megflow-mp, MegFlow's flags).")
    p.add_argument("--version", action="version", version=f"megflow_run {__version__} (megflow-mp)")
    _app_arguments(p, megflow_run=True)
    _run_arguments(p)
    p.add_argument("--dump", action="store_true", help="write the graph picture beside the config, then run")
    return p


def _sources(args) -> tuple[str | None, list[str]]:
    """``(config, plugin dirs)`` from the parsed arguments.

    A ``-p`` that names a ``.toml`` file is taken as the config when none is given (MegFlow's own
    quickstart README writes ``megflow_run -p app/config.toml -p app``); two different configs are
    an error, never a silent choice.
    """
    configs = [c for c in (getattr(args, "config_pos", None), args.config) if c]
    plugins = []
    for p in args.plugin:
        (configs if p.endswith(".toml") and Path(p).is_file() else plugins).append(p)
    if len({str(Path(c).resolve()) for c in configs}) > 1:
        raise UsageError(f"several configs given ({', '.join(configs)}): name one")
    return (configs[0] if configs else None), plugins


def _load(args):
    from .project import load_app

    config, plugins = _sources(args)
    return load_app(config, plugins, args.module_path, dynamic=args.dynamic)


def _check_files(app) -> None:
    """Model files named by node arguments must exist (what would otherwise fail only at ``run``)."""
    from .graph import check_model_files

    check_model_files(app)


def _schema(args) -> int:
    from .config.json_schema import schema_text
    from .plugins import load_registry

    for p in args.plugin:
        if not Path(p).exists():
            raise UsageError(f"-p {p}: no such plugin directory or file")
    text = schema_text(load_registry([Path(p) for p in args.plugin], list(args.module_path)))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _dump(app, path: Path, output: str | None) -> str:
    from .dump import write_graph

    out = output or str(path.with_suffix(".svg"))
    write_graph(app, out)
    return out


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="[megflow-mp] %(levelname)s %(message)s", stream=sys.stderr)


def _run(app, drain_timeout: float, args=None, path=None, dirs=()) -> int:
    if args is not None and getattr(args, "ray", None):
        from .cluster.source import AppSource
        from .cluster.supervisor import run_cluster_app

        source = AppSource.of(path, dirs, args.module_path, args.dynamic)
        return run_cluster_app(app, source, args.ray, drain_timeout=drain_timeout, place_timeout=args.ray_wait)
    from .supervisor import run_app

    return run_app(app, drain_timeout=drain_timeout)


def selfcheck() -> int:
    """Run the bundled logical_test; it prints ``logical_test pass`` when the engine works."""
    from .project import load_app
    from .selfcheck import LOGICAL_TEST

    app, _, _ = load_app(LOGICAL_TEST / "logical_test.toml", [LOGICAL_TEST])
    return _run(app, 30.0)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["quickstart"]:
        return megflow_quickstart(argv[1:])
    args = _parser().parse_args(argv)
    _logging()
    try:
        if args.command == "selfcheck":
            return selfcheck()
        if args.command == "token":
            from .auth.cli import run as token_command

            return token_command(args)
        if args.command == "nodes":
            from .reference import node_reference

            sys.stdout.write(node_reference())
            return 0
        if args.command == "schema":
            return _schema(args)
        app, path, dirs = _load(args)
        if args.command == "check":
            _check_files(app)
            _auth(app, args)
            plugins = ", ".join(str(d) for d in dirs) or "built-in node types only"
            print(f"{path}: ok ({len(app.procs)} worker processes, {len(app.templates)} graphs, "
                  f"{len(app.registry.nodes)} node types; plugins: {plugins})")
            return 0
        if args.command == "dump":
            print(f"wrote {_dump(app, path, args.output)}")
            return 0
        app = _auth(app, args)
        _settings(args)
        return _run(app, args.drain_timeout, args, path, dirs)
    except MegFlowError as exc:
        print(f"megflow-mp: error: {exc}", file=sys.stderr)
        return 1


def megflow_run(argv=None) -> int:
    """MegFlow's ``megflow_run``: ``-p`` (plugins; the config defaults to ``<dir>/<dirname>.toml``),
    ``-c``, ``-m``, ``--dynamic``, ``--dump`` (the graph picture beside the config, then run)."""
    args = _megflow_run_parser().parse_args(argv)
    _logging()
    try:
        app, path, dirs = _load(args)
        if args.dump:
            print(f"wrote {_dump(app, path, None)}")
        app = _auth(app, args)
        _settings(args)
        return _run(app, args.drain_timeout, args, path, dirs)
    except MegFlowError as exc:
        print(f"megflow_run: error: {exc}", file=sys.stderr)
        return 1


def megflow_quickstart(argv=None) -> int:
    """MegFlow's ``megflow_quickstart``: the same as ``megflow-mp quickstart``."""
    from .quickstart import main as quickstart_main

    return quickstart_main(argv)


if __name__ == "__main__":
    sys.exit(main())
