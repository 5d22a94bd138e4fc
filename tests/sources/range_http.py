"""A web server for tests that serves a folder with byte ranges (``Range: bytes=a-b``), as a
COG host (S3, nginx) does: ``python -m tests.sources.range_http PORT FOLDER``.

Python's own ``http.server`` answers a range request with the whole file, which GDAL's
``/vsicurl/`` cannot read a COG from."""

from __future__ import annotations

import os
import re
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeHandler(SimpleHTTPRequestHandler):
    """``SimpleHTTPRequestHandler`` with single byte ranges and ``Accept-Ranges``."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def do_GET(self) -> None:
        match = _RANGE.match(self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if not match or not os.path.isfile(path):
            super().do_GET()
            return
        size = os.path.getsize(path)
        start = int(match.group(1))
        stop = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        if start >= size:
            self.send_error(416)
            return
        with open(path, "rb") as fh:
            fh.seek(start)
            body = fh.read(stop - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{stop}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    port, folder = int(sys.argv[1]), sys.argv[2]
    handler = partial(RangeHandler, directory=folder)
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
