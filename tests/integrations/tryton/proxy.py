"""A fault-injecting HTTP proxy in front of trytond (real HTTP both ways), for the exactly-once tests.

Every JSON-RPC request is forwarded to Tryton; a fault armed for one RPC method acts on its first
successful answer — Tryton has committed — and the caller never gets that answer:

- `drop`: the proxy closes the connection without a response (a dropped connection);
- `hang`: the proxy holds the response back for `hang_s` seconds (the worker is killed meanwhile).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class TrytonProxy:
    def __init__(self, upstream: str, *, hang_s: float = 60):
        self.upstream = upstream.rstrip("/")
        self.hang_s = hang_s
        self.faults: dict[str, str] = {}  # rpc method -> "drop" | "hang" (once each)
        self.faulted: list[str] = []
        self.calls: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                return

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    method = json.loads(body).get("method", "")
                except ValueError:
                    method = ""
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                upstream = httpx.post(proxy.upstream + self.path, content=body, headers=headers, timeout=120)
                try:
                    succeeded = "result" in upstream.json()  # (a warning or error answer commits nothing)
                except ValueError:
                    succeeded = False
                with proxy._lock:
                    proxy.calls.append(method)
                    fault = proxy.faults.pop(method, None) if succeeded else None
                    if fault:
                        proxy.faulted.append(f"{fault}:{method}")
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault == "hang":
                    time.sleep(proxy.hang_s)
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> TrytonProxy:
        self.thread.start()
        return self

    def arm(self, method: str, fault: str) -> None:
        with self._lock:
            self.faults[method] = fault

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
