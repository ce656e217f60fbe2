"""RedisPush: every alert pushed to a redis list, then handed back as the stream's message (shared).

Input ``msg``: a string (an alert from Alert). It is RPUSHed to the list ``prefix + key`` and the
same envelope goes on to ``out`` (the stream's messages: ``GET /get_msgs/{id}`` of VideoServer, the
log of VideoInput). While redis is unreachable the app goes on: alerts still reach ``out``, an
ERROR line says what happened, and the alerts are spooled to disk and pushed when redis is back,
also after the app was killed and started again, each exactly once (see :mod:`.redis_list`). When
every input has ended, what is still held gets a last try (and stays spooled for the next start).

Args: ``host`` (MegFlow's ``ip`` also works; default 127.0.0.1), ``port`` (default 6379), ``db``
(default 0), ``prefix`` (default ``"electric_bicycle."``), ``key`` (default ``"alerts"``),
``backlog`` (alerts held during an outage, default 1000), ``retry_interval`` (s, default 1),
``connect_timeout`` (s, default 1), ``spool_dir`` (where alerts wait on disk while redis is down;
default ``$XDG_STATE_HOME/megflow-mp/spool``, else ``.megflow-mp/spool`` in the working directory).
"""

from megflow import register

from .redis_list import RedisList


@register(inputs=["inp"], outputs=["out"])
class RedisPush:
    def __init__(self, name, args):
        self.list = RedisList(key=str(args.get("prefix", "electric_bicycle.")) + str(args.get("key", "alerts")),
                              host=str(args.get("host", args.get("ip", "127.0.0.1"))), port=int(args.get("port", 6379)),
                              db=int(args.get("db", 0)), backlog=int(args.get("backlog", 1000)),
                              retry_interval=float(args.get("retry_interval", 1.0)),
                              connect_timeout=float(args.get("connect_timeout", 1.0)),
                              spool=args.get("spool_dir"))
        self.list.check()

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            if self.inp.is_closed():
                self.list.close()
            return
        if not isinstance(envelope.msg, str):
            raise ValueError(f"RedisPush: expected a string message (an alert), got {type(envelope.msg).__name__}")
        self.list.push(envelope.msg)
        self.out.send(envelope)
