"""The frame the local simulators share (Peppol access point, tax engine): a threaded HTTP server
holding the simulator's state, started in a daemon thread for tests or served in the foreground
by a management command."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], state: Any, verbose: bool):
        self.state = state
        self.verbose = verbose
        super().__init__(address, handler)


class LocalSimulator:
    """`start()` serves in a daemon thread, `serve_forever()` in this one; `state.config` holds the knobs."""

    thread_name = "simulator"

    def __init__(self, handler: type[BaseHTTPRequestHandler], state: Any, host: str, port: int, verbose: bool):
        self.state = state
        self.server = SimulatorServer((host, port), handler, state, verbose)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalSimulator:
        self.thread = threading.Thread(target=self.server.serve_forever, name=self.thread_name, daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def configure(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self.state.config, name, value)
