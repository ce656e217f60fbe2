"""Config files: the TOML schema (:mod:`.schema`) and the loader (:mod:`.loader`).

``load_config(path)`` returns a validated :class:`Config` or raises
:class:`~megflow_mp.errors.ConfigError` naming the file and the TOML path of the problem.
"""

from .loader import load_config, load_config_string
from .schema import Config, Connection, Graph, NamedConn, Node, PortRef, Resource

__all__ = [
    "Config",
    "Graph",
    "Node",
    "Resource",
    "Connection",
    "NamedConn",
    "PortRef",
    "load_config",
    "load_config_string",
]
