"""MegFlow's import name: ``from megflow import register`` works as it did."""

from megflow_mp import *  # noqa: F401,F403
from megflow_mp import __all__, __version__, version  # noqa: F401
