"""MegFlow's ``megflow.func_op``, re-exported from :mod:`megflow_mp.func_op`."""

from megflow_mp.func_op import *  # noqa: F401,F403
from megflow_mp.func_op import __all__  # noqa: F401
