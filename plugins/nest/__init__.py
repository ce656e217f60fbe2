"""nest: static subgraphs inside subgraphs. The main graph uses ``ppl`` as a node; ``ppl`` chains five
nodes whose type is the graph ``noop``; ``noop`` holds one ``Noop`` map node (two replicas, so
messages may overtake each other). Each message carries a numpy array (sent through shared memory
and forwarded by reference at every hop) that must arrive intact; a ``Reorder`` restores the order.

Run: ``megflow-mp run -c configs/nest/nest.toml -p plugins/nest``. The sink prints
``result {"id": i, "shape": [..], "checksum": c, "ok": true}`` per message, in id order.
"""
