"""Per-instance check: exactly this address's messages, each repetition once, right subgraph type,
and resources of three lifetimes (app, main graph, this subgraph instance) behaving as such."""

from megflow import Envelope, register


@register(inputs=["inp"], outputs=["out"])
class Checker:
    def __init__(self, name, args):
        self.parity, self.m, self.times = args["parity"], args["m"], args["times"]
        self.addr = None
        self.seen = set()
        self.errors = []
        self.last_global = 0

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            self.finish()
            return
        msg = envelope.msg
        if self.addr is None:
            self.addr = envelope.to_addr
        if msg["addr"] != self.addr or envelope.to_addr != self.addr:
            self.errors.append(f"got a message for {msg['addr']} in the instance of {self.addr}")
        key = (msg["seq"], msg["rep"])
        if key in self.seen:
            self.errors.append(f"duplicate {key}")
        self.seen.add(key)
        local = self.local_buf.next()
        if local != len(self.seen) + self.local_buf.start:
            self.errors.append(f"instance resource shared between instances (value {local})")
        value = self.global_buf.next()
        if value <= self.last_global:
            self.errors.append("global resource went backwards")
        self.last_global = value
        self.parent_buf.next()

    def finish(self):
        expected = self.m * self.times
        if self.addr is not None and self.addr % 2 != self.parity:
            self.errors.append(f"address {self.addr} ran in the wrong subgraph type")
        if len(self.seen) != expected:
            self.errors.append(f"got {len(self.seen)} messages, expected {expected}")
        verdict = {"addr": self.addr, "errors": self.errors, "count": len(self.seen)}
        self.out.send(Envelope.pack(verdict, info={"to_addr": self.addr}).repack(verdict))
