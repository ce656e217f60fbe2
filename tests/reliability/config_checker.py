"""``megflow-mp check`` on many configs, fast and safely: :class:`Checker` forks one process that
calls ``cli.main(["check", ...])`` for each case it is sent (the code path of the command, without
starting an interpreter per case). A case that takes longer than ``timeout`` is a hang: the
process is killed and a new one forked. The process's address space is capped, so a config that
makes the engine allocate without bound fails there instead of swapping the machine.

:func:`classify` sorts an outcome: ``valid``, ``clear error`` (exactly one ``megflow-mp: error:``
line naming a file of the case and a field or line in it), ``unclear error``, ``traceback``,
``hang`` or ``crash``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing
import os
import re
import resource
import traceback

MEMORY_CAP = 3 << 30
ERROR = "megflow-mp: error: "
# after the file: a TOML path (graphs[0].nodes[1].ty, include[0], main) and the reason, or a line of the file
FIELD = re.compile(r'^(?:[^\s"]|"(?:[^"\\]|\\.)*")+: |\bline \d+')  # quoted keys may hold spaces


def _serve(conn, cwd: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    os.chdir(cwd)
    from megflow_mp import cli

    while True:
        try:
            argv = conn.recv()
        except EOFError:
            return
        out, err, tb = io.StringIO(), io.StringIO(), None
        logging.root.handlers.clear()  # cli.main's basicConfig binds to this case's stderr
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = cli.main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
        except BaseException:  # noqa: BLE001 - what escaped the command is the finding
            rc, tb = None, traceback.format_exc()
        conn.send((rc, out.getvalue(), err.getvalue(), tb))


class Checker:
    def __init__(self, cwd: str, timeout: float = 20):
        self.cwd, self.timeout = cwd, timeout
        self.ctx = multiprocessing.get_context("fork")
        self.proc = None
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_serve, args=(child, self.cwd), daemon=True)
        self.proc.start()
        child.close()

    def check(self, argv: list[str]) -> tuple:
        """(rc, stdout, stderr, traceback or None, 'hang' | 'crash' | None)."""
        self.conn.send(argv)
        if self.conn.poll(self.timeout):
            try:
                return (*self.conn.recv(), None)
            except EOFError:
                self._restart()
                return None, "", "", None, "crash"
        self._restart()
        return None, "", "", None, "hang"

    def _restart(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()
        self._start()

    def close(self) -> None:
        self.conn.close()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def classify(rc, out: str, err: str, tb, failure, files: list[str]) -> tuple[str, str]:
    """(kind, the line or reason) for one checked case; ``files``: the paths the case wrote."""
    if failure:
        return failure, ""
    if tb is not None:
        return "traceback", tb.strip().splitlines()[-1]
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[megflow-mp] ")]
    if rc == 0 and not lines and ": ok (" in out:
        return "valid", out.strip()
    if rc == 1 and len(lines) == 1 and lines[0].startswith(ERROR):
        line = lines[0]
        file, _, rest = line[len(ERROR):].partition(": ")
        named = file in files or os.path.isfile(file)  # the case's file, or a file it includes
        if named and FIELD.search(rest):
            return "clear error", line
        return "unclear error", line
    return "unclear error", f"exit {rc}: " + " / ".join(lines[:4])[:400]
