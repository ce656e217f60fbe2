"""Config files: the TOML schema (:mod:`.schema`) and the loader (:mod:`.loader`).

``load_config(path)`` returns a validated :class:`Config` or raises
:class:`~megflow_mp.errors.ConfigError` naming the file and the TOML path of the problem.
"""

import importlib

_HOMES = {"load_config": "loader", "load_config_string": "loader", "load_variables": "loader", "PortRef": "portref",
          **{name: "schema" for name in ("Auth", "Config", "Connection", "Graph", "NamedConn", "Node", "Resource")}}


def __getattr__(name: str):
    """Names are imported on first use: ``PortRef`` needs no pydantic, the loader needs it."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)


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
    "load_variables",
]
