"""``python -m megflow_mp.quickstart``."""

import sys

from .command import main

sys.exit(main())
