"""A shared node that does its work in a child process it forks itself (as plugins may)."""

import multiprocessing as mp

from megflow import register


def _repeat(times, conn):
    while True:
        msg = conn.recv()
        if msg is None:
            break
        for i in range(times):
            conn.send(dict(msg, rep=i))
    conn.close()


@register(inputs=["inp"], outputs=["out"])
class RepeatProcess:
    def __init__(self, name, args):
        self.times = args.get("times", 10)
        ours, theirs = mp.Pipe()
        self.conn = ours
        # the plugin picks its own start method: the engine never sets one globally
        self.child = mp.get_context("fork").Process(target=_repeat, args=(self.times, theirs))
        self.child.start()
        theirs.close()

    def __del__(self):
        try:
            self.conn.send(None)
            self.child.join(5)
        except Exception:
            pass

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        self.conn.send(envelope.msg)
        for _ in range(self.times):
            self.out.send(envelope.repack(self.conn.recv()))
