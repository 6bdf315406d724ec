"""A bounded static file server on 127.0.0.1 for browser tests and benches that need only files:
``/static/`` from the repository's static/ folder (static/prompting, static/vendor) and ``/files/``
from a folder of the caller's, ``/`` answering ``files/index.html``. Started and stopped by the
caller (a context manager); it serves on its own daemon thread and quietly.

    with StaticServer(folder) as server:
        page.goto(server.url)
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
        ".samdec": "application/octet-stream",
    }

    def __init__(self, *args, files: Path, headers: dict[str, str], **kwargs) -> None:
        self.files = files
        self.extra_headers = headers
        super().__init__(*args, directory=str(ROOT), **kwargs)

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if clean == "/":
            return str(self.files / "index.html")
        if clean.startswith("/files/") and "/" not in clean[len("/files/") :]:
            return str(self.files / clean[len("/files/") :])
        if clean.startswith("/static/") and ".." not in clean:
            return super().translate_path(clean)
        return str(self.files / ".not-served")

    def end_headers(self) -> None:
        for name, value in self.extra_headers.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        pass


class StaticServer:
    """``headers`` are added to every answer (e.g. COOP/COEP for cross-origin isolation)."""

    def __init__(self, files: str | Path, headers: dict[str, str] | None = None) -> None:
        handler = functools.partial(_Handler, files=Path(files), headers=dict(headers or {}))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    def __enter__(self) -> StaticServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
