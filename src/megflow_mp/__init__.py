"""megflow-mp: MegFlow's graphs and Python plugins on real processes and shared memory.

The plugin API (unchanged from MegFlow): ``register``, ``res_register``, ``Envelope``,
``yield_now``, ``sleep``, ``join``, ``create_future``; the ``func_op`` helpers live in
:mod:`megflow_mp.func_op`. A program runs a graph and talks to it with ``Graph`` and ``block_on``
(:mod:`megflow_mp.program`). ``import megflow`` gives the same names.
"""

from .api import create_future, join, sleep, yield_now
from .envelope import Envelope
from .program import Graph, block_on
from .registry import register, res_register

__version__ = "0.1.0"


def version() -> str:
    return __version__


__all__ = ["register", "res_register", "Envelope", "yield_now", "sleep", "join", "create_future", "version",
           "__version__", "Graph", "block_on"]
