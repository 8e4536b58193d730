"""A static file server on 127.0.0.1 for download tests: serves the files under a folder, answers range requests,
records every request, and can hang up part-way through a body."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator


@dataclass
class Server:
    """Serves files under `root`; `cuts[path]` lists, per coming request, after how many body bytes to hang up."""

    root: Path
    url: str = ""
    cuts: dict[str, list[int]] = field(default_factory=dict)
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)

    def put(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def ranges(self, rel: str) -> list[str | None]:
        return [r for p, r in self.requests if p == "/" + rel]


def _handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng))
            path = state.root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1]) if rng and not state.ignore_range else 0
            if start >= len(data) > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            cuts = state.cuts.get(self.path, [])
            self.wfile.write(data[start : start + cuts.pop(0)] if cuts else data[start:])

        def log_message(self, *args) -> None:
            pass

    return Handler


def serve(root: Path) -> Iterator[Server]:
    """Run a `Server` for the files under `root` until the generator is closed (a pytest fixture's body)."""
    root.mkdir(parents=True, exist_ok=True)
    state = Server(root=root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
