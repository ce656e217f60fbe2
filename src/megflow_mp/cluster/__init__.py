"""Running an app on a Ray cluster (``megflow-mp run CONFIG --ray ADDRESS``); see docs/cluster.md.

Ray places processes on machines, starts and ends them there and detects lost machines; inside a
machine megflow-mp keeps its shared-memory transport, and between machines each machine's bridge
carries the same records over TCP. Nothing here imports Ray until a cluster run starts.

Modules: :mod:`.placement` (which machine runs which process), :mod:`.supervisor` (the run),
:mod:`.agent` (the Ray actor on each machine), :mod:`.host` (the process it starts there),
:mod:`.bridge` (proxies and links), :mod:`.wire` (the framing between machines), :mod:`.source`
(how each machine loads the same app).
"""
