"""Sends ``m`` messages to each of ``n`` addresses (interleaved), then an empty envelope to each."""

from megflow import Envelope, register


@register(outputs=["out"])
class Source:
    def __init__(self, name, args):
        self.n, self.m = args["n"], args["m"]

    def exec(self):
        for seq in range(self.m):
            for addr in range(self.n):
                envelope = Envelope.pack({"addr": addr, "seq": seq}, info={"partial_id": seq})
                envelope.to_addr = addr
                envelope.tag = "TransGraph0" if addr % 2 else "TransGraph1"
                self.out.send(envelope)
        for addr in range(self.n):
            envelope = Envelope.pack(None)
            envelope.to_addr = addr
            self.out.send(envelope)
