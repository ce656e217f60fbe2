"""Metrics and the live dashboard of a running app.

How it fits together (one module per part):

* :mod:`.counters`: the totals the runtime's hot path adds to (a counter increment, no lock, no
  system call per message);
* :mod:`.sampler`: in every worker, a thread writes a snapshot of its process's metrics to the
  run directory once a second (:mod:`.snapshot` is its format), and exec time is sampled by
  :mod:`.exectime`;
* :mod:`.run`: the supervisor creates and removes the run directory and serves ``--metrics-port``
  (:mod:`.server`);
* :mod:`.collect`: a scrape merges every snapshot into the Prometheus exposition, in whichever
  process serves it;
* :mod:`.http`: front-door request metrics, and the routes of :mod:`.routes` (``/metrics``,
  ``/dashboard``) on every front door; :mod:`.dashboard` computes what the page shows;
* :mod:`.catalog`: every metric's name, type, labels and meaning; :mod:`.settings`: on/off,
  interval, retention of ended streams.

Why not prometheus-client's own multiprocess mode: it cannot remove a label set (an ended stream's
series would stay forever), takes a lock on every increment, and cannot export process or
shared-memory figures (custom collectors do not work there). The snapshots here give the same
guarantee (every process's values in every scrape, counters kept across a restart) and use
prometheus-client for the exposition.
"""

from .counters import COUNTS
from .http import instrument
from .run import begin_run, end_run
from .sampler import watch_stream, watch_worker
from .settings import SETTINGS, configure

__all__ = ["COUNTS", "SETTINGS", "begin_run", "configure", "end_run", "instrument", "watch_stream", "watch_worker"]
