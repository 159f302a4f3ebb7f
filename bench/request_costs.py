"""Where each request of the load test's server spent its time: a middleware of bench/load_settings.py.

For every request it writes one line to `var/loadtest/requests.log`: the path, the wall time, the
process's CPU time, the time and number of SQL statements, and the time spent in the garbage
collector (full collections counted apart). A slow request whose wall time is not CPU, SQL or
collection waited: for a core, a lock or a worker. Costs a few microseconds a statement.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection
from django.http import HttpRequest, HttpResponse

LOG = Path(__file__).resolve().parent.parent / "var" / "loadtest" / "requests.log"
_state = threading.local()


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _state.gc_began = time.perf_counter()
        return
    began = getattr(_state, "gc_began", None)
    if began is None or not hasattr(_state, "gc_s"):
        return
    _state.gc_s += time.perf_counter() - began
    _state.full_collections += info.get("generation") == 2


gc.callbacks.append(_on_gc)


class RequestCosts:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        LOG.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(LOG, "a", buffering=1)  # noqa: SIM115 - one line per request, for the process's life

    def __call__(self, request: HttpRequest) -> HttpResponse:
        sql = [0.0, 0]

        def timed(execute, statement, params, many, context):
            began = time.perf_counter()
            try:
                return execute(statement, params, many, context)
            finally:
                sql[0] += time.perf_counter() - began
                sql[1] += 1

        _state.gc_s, _state.full_collections = 0.0, 0
        wall, cpu = time.perf_counter(), time.process_time()
        with connection.execute_wrapper(timed):
            response = self.get_response(request)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.log.write(
            f"{time.time():.3f} {os.getpid()} {request.method} {request.path} {response.status_code} "
            f"wall {wall * 1000:.1f} cpu {cpu * 1000:.1f} sql {sql[0] * 1000:.1f} q {sql[1]} "
            f"gc {_state.gc_s * 1000:.1f} full {_state.full_collections}\n"
        )
        return response
