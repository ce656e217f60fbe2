"""Schemathesis against a running front door's own ``/openapi.json``.

:func:`fuzz` generates requests for every operation of the schema (half fitting the schema, half
not: schemathesis' positive and negative modes), sends them from a few client threads at once
(each with its own keep-alive connection), and checks each response with schemathesis' own
checks: no 5xx (a 503 only where the operation documents it), a documented status code, the
documented content type and body schema. Only 127.0.0.1 is ever contacted: a generated
``/start`` URL that names a network source is not sent (counted in ``skipped``). With ``headers``
(``Authorization: Bearer TOKEN`` of an operator on a server with auth), every request carries them,
the schema's own fetch included.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
NETWORK = ("rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp", "tls", "ftp", "srt", "rtp", "mms", "gopher")
CLIENTS = 4
BATCH = 100  # examples per hypothesis run: one run per operation and mode in turn


@dataclass
class FuzzResult:
    requests: int = 0
    skipped: int = 0
    unsendable: int = 0  # generated cases the client could not turn into a request (never sent)
    unsendable_examples: list = field(default_factory=list)
    harness_errors: list = field(default_factory=list)  # failures of this module's own client code
    statuses: Counter = field(default_factory=Counter)
    server_errors: list = field(default_factory=list)  # (request, status, body) of each 5xx not documented
    nonconforming: Counter = field(default_factory=Counter)  # check name -> failures
    nonconforming_requests: int = 0  # requests that failed at least one schema check
    examples: dict = field(default_factory=dict)  # check name -> first failing request and why
    transport_errors: list = field(default_factory=list)  # (request, error) when no response came
    operations: Counter = field(default_factory=Counter)

    @property
    def lost(self) -> int:
        return len(self.server_errors) + len(self.transport_errors)


def load_operations(base_url: str, headers: dict | None = None) -> list:
    """Every operation of the schema but the live event streams (``text/event-stream``: a response
    that lasts as long as the server, which no generated request may wait for)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=headers or {})
    return [op for op in (result.ok() for result in schema.get_all_operations()) if not endless(op)]


def endless(op) -> bool:
    ok = op.definition.raw.get("responses", {}).get("200", {})
    return "text/event-stream" in ok.get("content", {})


def documented(case, status: int) -> bool:
    return str(status) in case.operation.definition.raw.get("responses", {})


def describe(case) -> str:
    return f"{case.operation.label} path={case.path_parameters} media={case.media_type} body={case.body!r:.120}"


def weight(op) -> int:
    """Runs per round: 3 for an operation with a free-text path parameter (a file path, a name),
    where the interesting inputs are, 1 for the others (ids, no parameters)."""
    params = op.definition.raw.get("parameters", [])
    return 3 if any(p.get("in") == "path" and p.get("schema", {}).get("type") == "string" for p in params) else 1


def reaches_network(case) -> bool:
    """A value that the server would open as a network URL: in the path, the query or the body
    (``POST /streams``' ``url``); never sent: this machine's tests talk to 127.0.0.1 only."""
    body = getattr(case, "body", None)
    for value in _leaves([case.path_parameters or {}, case.query or {}, body if isinstance(body, (dict, list)) else []]):
        text = str(value).strip().lower()
        if "://" in text and text.split("://", 1)[0].split(":")[-1] in NETWORK:
            return True
    return False


def _leaves(value):
    """Every value inside dicts and lists, depth first."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def fuzz(base_url: str, total: int, timeout: float = 30, headers: dict | None = None) -> FuzzResult:
    """Send about ``total`` generated requests (at least one per operation) to the server at
    ``base_url``, each with ``headers``, and return what came back."""
    ops = load_operations(base_url, headers)
    result = FuzzResult()
    lock = threading.Lock()
    local = threading.local()
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)

    def send(case):
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            response = case.call(base_url=base_url, session=session, timeout=timeout, headers=headers)
        except requests.RequestException as exc:
            session.close()
            local.session = None
            with lock:
                result.transport_errors.append((describe(case), f"{type(exc).__name__}: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - schemathesis could not make a request of this case
            with lock:
                result.unsendable += 1
                if len(result.unsendable_examples) < 3:
                    result.unsendable_examples.append(f"{describe(case)}: {type(exc).__name__}: {exc}"[:300])
            return
        failed = []
        try:
            case.validate_response(response, checks=CHECKS)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a FailureGroup, a BaseExceptionGroup: not an Exception
            failed = [type(f).__name__ if not getattr(f, "title", None) else f.title
                      for f in getattr(exc, "exceptions", [exc])]
            first = str(exc).strip().splitlines()
        with lock:
            result.requests += 1
            result.statuses[response.status_code] += 1
            result.operations[case.operation.label] += 1
            if response.status_code >= 500 and not (response.status_code in (503, 504)
                                                    and documented(case, response.status_code)):
                result.server_errors.append((describe(case), response.status_code, response.text[:300]))
            result.nonconforming_requests += bool(failed)
            for name in failed:
                result.nonconforming[name] += 1
                result.examples.setdefault(name, (describe(case), " / ".join(first[:6])))

    with ThreadPoolExecutor(CLIENTS) as pool:
        inflight = threading.BoundedSemaphore(CLIENTS * 2)

        submitted = [0]

        def submit(case):
            submitted[0] += 1
            inflight.acquire()
            future = pool.submit(send, case)
            future.add_done_callback(lambda _: inflight.release())
            future.add_done_callback(note_harness_error)

        def note_harness_error(future):  # what send() did not expect is recorded, never dropped
            exc = future.exception()
            if exc is not None:
                with lock:
                    result.harness_errors.append(f"{type(exc).__name__}: {exc}"[:300])

        # round-robin over (operation, mode) in runs of BATCH examples until ``total`` were sent;
        # a pair whose runs come back (nearly) empty twice has nothing more to give and leaves
        active = {(op, mode): 0 for op in ops for mode in modes}
        while active and submitted[0] < total:
            for key in [k for k in list(active) for _ in range(weight(k[0]))]:
                if key not in active:
                    continue
                op, mode = key
                made = [0]

                @settings(max_examples=max(1, min(BATCH, total - submitted[0])), deadline=None, database=None,
                          suppress_health_check=list(HealthCheck), phases=[Phase.generate],
                          verbosity=Verbosity.quiet)
                @given(op.as_strategy(generation_mode=mode))
                def run(case):
                    made[0] += 1
                    if reaches_network(case):
                        with lock:
                            result.skipped += 1
                        return
                    submit(case)

                try:
                    run()
                except Unsatisfiable:  # e.g. nothing to negate in an operation without parameters
                    pass
                if made[0] < BATCH // 10:
                    active[key] += 1
                    if active[key] >= 2:
                        del active[key]
                if submitted[0] >= total:
                    break
        pool.shutdown(wait=True)
    return result
