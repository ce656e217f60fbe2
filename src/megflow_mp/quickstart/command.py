"""The ``quickstart`` command line: flags, the run, exit codes.

Contracts
---------
* :func:`add_arguments` adds the flags to any argparse parser (``megflow-mp quickstart`` uses a
  subparser, ``megflow_quickstart`` its own parser); :func:`run` takes the parsed namespace.
* :func:`run` prints MegFlow's greeting, asks (see :mod:`.dialog`), writes the project only once
  every answer is valid, and returns 0. A dialog that cannot finish prints one line
  ``megflow-mp quickstart: error: <why>`` to stderr and returns 1; Ctrl-C returns 130. In both
  cases nothing has been written.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..errors import QuickstartError
from .asker import Asker
from .dialog import make_project
from .templates import write_project

__all__ = ["add_arguments", "run", "main"]

GREETING = ("Welcome to MegFlow quickstart utility.\n"
            "Please enter values for the following settings (just press Enter to accept a default value, "
            "if one is given in brackets).")
DESCRIPTION = ("Create a MegFlow app by answering a few questions: a model service (modelserving), an image or "
               "video service skeleton, a minimal custom graph, or a project from a template repository (--git). "
               "Answers come from the keyboard, from piped lines (one answer a line) or from the flags.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add quickstart's flags to ``parser``."""
    parser.add_argument("--path", help="the project directory to create (new or empty) [megflow-app]")
    parser.add_argument("--type", help="modelserving, image, video or custom [modelserving]")
    parser.add_argument("--input-name", help="modelserving: the model's input tensor name [data]")
    parser.add_argument("--model", help="modelserving: the .mge or .onnx model file [model.mge]")
    parser.add_argument("--labels", help="modelserving: a label file (one class a line) for top-k answers")
    parser.add_argument("--port", type=int, help="the service's HTTP port [8080; video: 8085]")
    parser.add_argument("--git", metavar="URL", help="clone this template repository instead of a built-in template")
    parser.add_argument("--branch", help="--git: the branch or tag to clone [the repository's default]")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="--git: the value of placeholder ##NAME## (repeatable)")
    parser.add_argument("-y", "--yes", action="store_true",
                        help="take the default of every question no flag answers (no prompts)")


def run(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    """Run the dialog for the parsed ``args`` and create the project; see the module contract."""
    stderr = stderr if stderr is not None else sys.stderr
    asker = Asker(stdin, stdout, assume_defaults=args.yes)
    try:
        asker.say(GREETING)
        root, tree = make_project(asker, args)
        write_project(tree, root)
    except QuickstartError as e:
        stderr.write(f"megflow-mp quickstart: error: {e}\n")
        return 1
    except OSError as e:
        stderr.write(f"megflow-mp quickstart: error: cannot write the project: {e}\n")
        return 1
    except KeyboardInterrupt:
        stderr.write("\nmegflow-mp quickstart: interrupted; nothing was written\n")
        return 130
    asker.say(f"Project created, read {root}/README.md to run it.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``megflow_quickstart [flags]``: parse ``argv`` (default ``sys.argv[1:]``) and :func:`run`."""
    parser = argparse.ArgumentParser(prog="megflow_quickstart", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
