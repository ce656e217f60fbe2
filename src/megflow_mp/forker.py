"""Forking workers for a supervisor that has threads, from a process that has none.

A process with threads must not fork: a lock another thread holds at that moment (the buffer lock
of ``sys.stderr`` while Ray's log thread prints a remote process's output, a module's import lock)
stays held for ever in the child, which hangs at its first log line. The cluster supervisor has to
connect to Ray (which starts such threads) before it knows which workers run on its own machine, so
it starts a :class:`Forker` first, while it has no thread: a child process that waits for requests
and forks each worker from there, with the app and its items as they were.

Each worker is forked twice (a short-lived child of the forker forks it and exits), so it is
adopted by the supervisor, a child subreaper (``PR_SET_CHILD_SUBREAPER``): the supervisor waits for
it, watches it with a pidfd and signals it like a worker it forked itself, and the worker dies with
the supervisor (its death signal is set once it is adopted; see
:func:`megflow_mp.runtime.worker.worker_main`). The forker dies with the supervisor too, and ends
when :meth:`Forker.close` closes its request pipe. Its process name is ``mf-forker``.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback

TITLE = "mf-forker"  # the forker's process name (``ps``, /proc/PID/comm)


class ForkError(RuntimeError):
    """The forker could not start a worker (its message says why)."""


class Forker:
    """Forks the workers of ``app`` (run ``run_id``; each process's install ``items``) on request.
    Create it before this process starts any thread; the caller must be a child subreaper."""

    def __init__(self, app, run_id: str, items: dict[int, list]):
        req_r, req_w = os.pipe()
        ans_r, ans_w = os.pipe()
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(req_w)
            os.close(ans_r)
            _serve(app, run_id, items, parent, req_r, ans_w)  # never returns
        os.close(req_r)
        os.close(ans_w)
        os.set_inheritable(req_w, False)
        os.set_inheritable(ans_r, False)
        self.requests = os.fdopen(req_w, "wb")
        self.answers = os.fdopen(ans_r, "rb")

    def fork(self, proc: int, restarted: bool = False, env: dict | None = None) -> int:
        """Start the worker of process ``proc`` (with ``env`` added to its environment); returns its
        pid once it exists and listens at its address. Raises ForkError when it cannot."""
        try:
            pickle.dump((proc, restarted, dict(env or {})), self.requests)
            self.requests.flush()
            answer = pickle.load(self.answers)
        except (OSError, EOFError) as exc:
            raise ForkError(f"the forker (pid {self.pid}) is gone: {exc}") from None
        if isinstance(answer, str):
            raise ForkError(answer)
        return answer

    def close(self) -> None:
        """End the forker (it exits on the end of its requests) and reap it; idempotent."""
        if self.pid is None:
            return
        for f in (self.requests, self.answers):
            try:
                f.close()
            except OSError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.pid = None


def _serve(app, run_id: str, items: dict, parent: int, requests: int, answers: int) -> None:
    """The forker's loop: one request ``(proc, restarted, env)`` at a time; answers with the pid or
    a one-line error. Never returns."""
    from .runtime.transport import listen
    from .runtime.worker import _die_with_parent, _set_title
    from .supervisor import exit_reason, fork_worker

    code = 0
    try:
        _die_with_parent(parent)
        _set_title(TITLE)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
        inp, out = os.fdopen(requests, "rb"), os.fdopen(answers, "wb")
        while True:
            try:
                proc, restarted, env = pickle.load(inp)
            except EOFError:
                break
            os.environ.update(env)
            mid = os.fork()
            if mid == 0:  # forks the worker and exits at once: the worker is adopted by ``parent``
                status = 0
                try:
                    pid = fork_worker(app, proc, run_id, listen(run_id, proc), items[proc], restarted,
                                      parent=parent)
                    pickle.dump(pid, out)
                except BaseException as exc:  # noqa: BLE001 - answered, the supervisor reports it
                    pickle.dump(f"cannot start the worker of process {proc}: {exc}", out)
                    status = 1
                finally:
                    out.flush()
                    os._exit(status)
            _, status = os.waitpid(mid, 0)
            if os.WIFSIGNALED(status):  # it died before it could answer
                pickle.dump(f"cannot start the worker of process {proc}: its forking process {exit_reason(status)}",
                            out)
                out.flush()
    except BaseException:  # noqa: BLE001 - last resort: report and exit non-zero
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)
