"""The engine's self-check, shipped inside the package: MegFlow's ``logical_test`` graph.

``LOGICAL_TEST`` is its plugin directory (``logical_test.toml`` inside); ``megflow-mp selfcheck``
runs it from an installed wheel with no source tree and prints ``logical_test pass``. The source
tree's ``plugins/logical_test`` is a link to it, so ``megflow-mp run -p plugins/logical_test``
(MegFlow's own command) runs the same files.
"""

from pathlib import Path

LOGICAL_TEST = Path(__file__).resolve().parent / "logical_test"
