"""A read-only HTTP server for a folder of reports, bound to the loopback interface by default.

It answers GET and HEAD only (other methods get 405 or 501), serves files that lie inside the
folder after resolving symbolic links (so ``..``, ``%2e%2e``, absolute paths and links pointing
outside all end in 404), hides dot files, sends the MIME types the reports need, and honours
single-range ``Range`` requests (Chromium seeks audio with them). When bound to a loopback
address it also refuses requests whose ``Host`` header names another machine, so a web page
elsewhere cannot read the reports through DNS rebinding.
"""

from __future__ import annotations

import email.utils
import html
import ipaddress
import os
import sys
import threading
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

from calyx.errors import ParameterError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "MIME_TYPES", "ReportServer", "is_loopback", "make_server", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9999

#: Content types by suffix; anything else is ``application/octet-stream``.
MIME_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}

_CHUNK = 64 * 1024
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 possibly in brackets) is the loopback interface."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8000 -> ::1``, ``a:80 -> a``)."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class ReportServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its document root."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], root: Path, *, quiet: bool = False) -> None:
        self.root = root
        self.quiet = quiet
        self.loopback_only = is_loopback(address[0])
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        """``http://host:port/`` of the listening socket."""
        host, port = self.server_address[0], self.server_address[1]
        h = str(host)
        return f"http://[{h}]:{port}/" if ":" in h else f"http://{h}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: ReportServer
    server_version = "calyx-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # ---- methods ----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _read_only(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "this server is read-only: GET and HEAD only",
                    extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_CONNECT = do_TRACE = _read_only

    def log_message(self, format: str, *args: object) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # ---- helpers ----------------------------------------------------------------------------------
    def _error(self, status: HTTPStatus, message: str, *, extra: dict[str, str] | None = None) -> None:
        body = (f"<!DOCTYPE html><title>{status.value} {html.escape(status.phrase)}</title>"
                f"<h1>{status.value} {html.escape(status.phrase)}</h1><p>{html.escape(message)}</p>\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _resolve(self) -> tuple[Path, str] | None:
        """The file or folder a request names, inside the root, or None.

        Returns the resolved path and the decoded URL path.
        """
        raw = urllib.parse.urlsplit(self.path).path
        if not raw.startswith("/"):
            return None
        decoded = urllib.parse.unquote(raw, errors="strict") if "%" in raw else raw
        if "\x00" in decoded or "\\" in decoded:
            return None
        parts = [p for p in decoded.split("/") if p not in ("", ".")]
        if any(p == ".." or p.startswith(".") for p in parts):
            return None
        root = self.server.root
        candidate = root.joinpath(*parts) if parts else root
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if resolved != root and root not in resolved.parents:
            return None
        return resolved, decoded

    def _host_ok(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = self.headers.get("Host")
        return host is None or is_loopback(_host_name(host))

    def _serve(self, *, body: bool) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.FORBIDDEN, "this server answers only requests addressed to the loopback interface")
            return
        try:
            found = self._resolve()
        except UnicodeDecodeError:
            found = None
        if found is None:
            self._error(HTTPStatus.NOT_FOUND, "no such file in the served folder")
            return
        path, url_path = found
        if path.is_dir():
            if not url_path.endswith("/"):
                location = urllib.parse.quote(url_path + "/")
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            index = path / "index.html"
            if index.is_file():
                self._send_file(index, body=body)
            else:
                self._send_listing(path, url_path, body=body)
            return
        if not path.is_file():
            self._error(HTTPStatus.NOT_FOUND, "not a regular file")
            return
        self._send_file(path, body=body)

    def _common_headers(self, content_type: str) -> None:
        self.send_header("Content-Type", content_type)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-cache")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", _CSP)

    def _send_listing(self, folder: Path, url_path: str, *, body: bool) -> None:
        items = []
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if entry.name.startswith("."):
                continue
            name = entry.name + ("/" if entry.is_dir() else "")
            label = name
            if entry.is_dir() and (entry / "index.html").is_file():
                label = f"{entry.name}/ (report)"
            items.append(f'<li><a href="{urllib.parse.quote(name)}">{html.escape(label)}</a></li>')
        title = html.escape(url_path)
        data = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
                f"<body><h1>Reports in {title}</h1><ul>{''.join(items)}</ul></body></html>\n").encode()
        self.send_response(HTTPStatus.OK)
        self._common_headers("text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _byte_range(self, size: int, etag: str, last_modified: str) -> tuple[int, int] | str | None:
        """``(first, last)`` of a satisfiable single range, None to send the whole file, or ``"416"``."""
        header = self.headers.get("Range")
        if not header:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() not in (etag, last_modified):
            return None
        unit, _, spec = header.partition("=")
        if unit.strip().lower() != "bytes" or "," in spec:
            return None  # other units and multiple ranges: the whole file is a valid answer
        first_s, dash, last_s = spec.strip().partition("-")
        if not dash:
            return None
        try:
            if first_s == "":
                n = int(last_s)
                if n <= 0:
                    return "416"
                return max(size - n, 0), size - 1
            first = int(first_s)
            last = int(last_s) if last_s else size - 1
        except ValueError:
            return None
        if first < 0:
            return None
        if first >= size:
            return "416"
        if last < first:
            return None
        return first, min(last, size - 1)

    def _send_file(self, path: Path, *, body: bool) -> None:
        try:
            fh: IO[bytes] = path.open("rb")
        except OSError:
            self._error(HTTPStatus.NOT_FOUND, "the file cannot be read")
            return
        with fh:
            st = os.fstat(fh.fileno())
            size = st.st_size
            etag = f'"{st.st_mtime_ns:x}-{size:x}"'
            last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
            content_type = MIME_TYPES.get(path.suffix.lower(), "application/octet-stream")
            rng = self._byte_range(size, etag, last_modified)
            if rng == "416":
                self._error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, f"the file has {size} bytes",
                            extra={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"})
                return
            if isinstance(rng, tuple):
                first, last = rng
                self.send_response(HTTPStatus.PARTIAL_CONTENT)
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            else:
                first, last = 0, size - 1
                self.send_response(HTTPStatus.OK)
            length = max(last - first + 1, 0)
            self._common_headers(content_type)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(length))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            self.end_headers()
            if not body or length == 0:
                return
            fh.seek(first)
            remaining = length
            try:
                while remaining > 0:
                    chunk = fh.read(min(_CHUNK, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                # the browser dropped the request (it does so when it seeks audio)
                self.close_connection = True


def make_server(
    root: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    quiet: bool = False,
) -> ReportServer:
    """A :class:`ReportServer` for the folder ``root``, listening but not yet serving.

    Parameters
    ----------
    root : str or os.PathLike
        The folder to serve (read-only).
    host : str
        Address to bind; the loopback interface unless told otherwise.
    port : int
        TCP port; 0 picks a free one (see ``server.server_address``).
    quiet : bool
        Do not log requests on stderr.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder.
    ParameterError
        ``port`` is out of range.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder to serve")
    if not 0 <= int(port) <= 65535:
        raise ParameterError(f"port must be within 0..65535, got {port}")
    return ReportServer((host, int(port)), folder.resolve(), quiet=quiet)


def serve(
    root: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    quiet: bool = False,
    ready: Callable[[ReportServer], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve ``root`` until interrupted (or until ``stop`` is set).

    ``ready`` is called with the server once it listens (e.g. to print its URL).
    """
    server = make_server(root, host=host, port=port, quiet=quiet)
    with server:
        if ready is not None:
            ready(server)
        if stop is None:
            server.serve_forever(poll_interval=0.25)
            return
        worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        worker.start()
        stop.wait()
        server.shutdown()
        worker.join()

