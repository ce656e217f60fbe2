"""Demux: routes each envelope to the element of dict port ``out`` whose key is ``str(to_addr)``."""

import logging

from ..nodeargs import NoArgs
from ..registry import register

log = logging.getLogger("megflow_mp")


@register(name="Demux", inputs=["inp"], outputs=["out:{}"], args=NoArgs)
class Demux:
    def __init__(self, name, args):
        self.name = name
        self._unknown = set()

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        key = str(envelope.to_addr)
        port = self.out.get(key)
        if port is None:
            if key not in self._unknown:
                self._unknown.add(key)
                log.warning("Demux %r: no output for to_addr %r (outputs: %s); dropped",
                            self.name, envelope.to_addr, ", ".join(sorted(self.out)))
            return
        port.send(envelope)
