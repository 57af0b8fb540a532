"""Files served over HTTP on 127.0.0.1 with HEAD and Range support (RangeHTTPServer), as
Lithops' URL partitioner needs them: it sizes an object with HEAD (``content-length``) and
splits it with ``Range`` GETs only when the server says ``accept-ranges``."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

from RangeHTTPServer import RangeRequestHandler


class _QuietHandler(RangeRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log on the test's stderr."""


@contextlib.contextmanager
def serve_files(directory: Path, files: dict[str, bytes]) -> Iterator[str]:
    """Write ``files`` into ``directory`` and serve them; yields the base URL."""
    for name, body in files.items():
        (directory / name).write_bytes(body)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
