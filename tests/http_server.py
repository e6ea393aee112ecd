"""A local HTTP server for download tests: serves a folder on 127.0.0.1, with faults on demand.

``server.fail("images/a.png", "drop", "500")`` queues faults for one file,
used one per request, in order:

- ``"drop"``: send the headers of the whole file, half of the body, then close;
- ``"500"``, ``"503"``, ``"429"``, ``"408"``... (any status code): answer with that status;
- ``"corrupt"``: send the file with its first bytes changed (a wrong checksum);
- ``"offrange"``: answer a Range request with a 206 that starts at byte 0.

``prefix`` is the URL path the folder is served under (for example
``/owner/repo/<sha>``, as raw.githubusercontent.com does); ``range_support``
turns Range requests (HTTP 206) on or off; a path that is not there is a 404.
``server.requests`` records ``(URL path, Range header)`` of every request.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import unquote, urlsplit


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        owner.requests.append((path, self.headers.get("Range")))
        fault = owner.next_fault(path)
        if fault and fault.isdigit():
            return self.send_error(int(fault), "injected status")
        file = (owner.root / path.removeprefix(owner.prefix).lstrip("/")).resolve()
        if not (path.startswith(owner.prefix) and file.is_file() and owner.root in file.parents):
            return self.send_error(404, "not found")
        body = file.read_bytes()
        if fault == "corrupt":
            body = bytes(b ^ 0xFF for b in body[:16]) + body[16:]
        start = self._range_start()
        if fault == "offrange" and start is not None:
            start = 0
        if start is not None and start >= len(body):
            return self.send_error(416, "range not satisfiable")
        if start is not None:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        self.wfile.write(body)
        return None

    def _range_start(self) -> int | None:
        header = self.headers.get("Range", "")
        if not (self.server.owner.range_support and header.startswith("bytes=") and header.endswith("-")):
            return None
        return int(header[len("bytes=") : -1])

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultyServer


class FaultyServer:
    """Serve ``root`` on a random port of 127.0.0.1 until :meth:`stop`; use as a context manager."""

    def __init__(self, root: Path, *, prefix: str = "", range_support: bool = True) -> None:
        self.root = Path(root).resolve()
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.range_support = range_support
        self.requests: list[tuple[str, str | None]] = []
        self._faults: dict[str, list[str]] = defaultdict(list)
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)
        self._stopped = False

    @property
    def url(self) -> str:
        """The address of the served folder: ``http://127.0.0.1:<port><prefix>``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    def fail(self, path: str, *faults: str) -> None:
        """Queue ``faults`` for the next requests of ``path`` (relative to the served folder)."""
        with self._lock:
            self._faults[f"{self.prefix}/{path.lstrip('/')}"].extend(faults)

    def next_fault(self, path: str) -> str | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.pop(0) if queue else None

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port (a later request is refused); safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
