"""The report server: read-only, loopback by default, nothing outside its folder, ranges for audio."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from calyx.report import make_server
from calyx.report._server import ReportServer

SECRET = b"outside the served folder"
WAV = bytes(range(256)) * 40  # 10240 bytes, each offset identifiable


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "site"
    (root / "report" / "audio").mkdir(parents=True)
    (root / "index.html").write_text("<!DOCTYPE html><title>reports</title><p>top</p>", encoding="utf-8")
    (root / "report" / "index.html").write_text("<!DOCTYPE html><title>one</title>", encoding="utf-8")
    (root / "report" / "audio" / "a.wav").write_bytes(WAV)
    (root / "report" / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "report" / "map.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>", encoding="utf-8")
    (root / "report" / "data.bin").write_bytes(b"\x00\x01")
    (root / "plain").mkdir()
    (root / "plain" / "x.txt").write_text("x", encoding="utf-8")
    (root / ".hidden").write_bytes(SECRET)
    os.symlink(tmp_path / "secret.txt", root / "link-out.txt")
    os.symlink(tmp_path, root / "dir-out")
    os.symlink(root / "report" / "plot.png", root / "link-in.png")
    return root


@pytest.fixture
def server(site: Path) -> Iterator[ReportServer]:
    srv = make_server(site, port=0, quiet=True)
    worker = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    worker.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        worker.join(timeout=5)


def _request(
    srv: ReportServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = srv.server_address[0], srv.server_address[1]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    try:
        # the path is sent exactly as given: no client-side normalisation of ``..`` or escapes
        conn.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def test_binds_to_loopback_by_default(site: Path) -> None:
    srv = make_server(site, port=0, quiet=True)
    try:
        assert srv.server_address[0] == "127.0.0.1"
        assert srv.url.startswith("http://127.0.0.1:")
    finally:
        srv.server_close()


def test_serves_index_pages_and_files(server: ReportServer) -> None:
    status, headers, body = _request(server, "GET", "/")
    assert status == 200 and b"<p>top</p>" in body
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in headers["content-security-policy"]
    status, _, body = _request(server, "GET", "/report/")
    assert status == 200 and b"<title>one</title>" in body
    status, headers, _ = _request(server, "GET", "/report")
    assert status == 301 and headers["location"] == "/report/"
    status, _, body = _request(server, "GET", "/link-in.png")  # a link that stays inside is fine
    assert status == 200 and body.startswith(b"\x89PNG")


def test_lists_a_folder_without_index_but_hides_dot_files(server: ReportServer) -> None:
    status, headers, body = _request(server, "GET", "/plain/")
    assert status == 200 and b"x.txt" in body and headers["content-type"].startswith("text/html")
    status, _, body = _request(server, "GET", "/?")
    assert status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/report/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/report/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%5csecret.txt",
        "/report/..\\..\\secret.txt",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/etc/passwd",
        "/link-out.txt",
        "/dir-out/secret.txt",
        "/.hidden",
        "/%2ehidden",
        "/report/%00index.html",
        "/%ff%fe",
    ],
)
def test_refuses_everything_outside_the_folder(server: ReportServer, path: str) -> None:
    status, _, body = _request(server, "GET", path)
    assert status == 404, f"{path} answered {status}"
    assert SECRET not in body and b"root:" not in body


def test_missing_file_is_404(server: ReportServer) -> None:
    status, headers, _ = _request(server, "GET", "/report/nothing.wav")
    assert status == 404 and headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_is_read_only(server: ReportServer, site: Path, method: str) -> None:
    status, headers, _ = _request(server, method, "/report/index.html", {"Content-Length": "0"})
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert (site / "report" / "index.html").read_text(encoding="utf-8") == "<!DOCTYPE html><title>one</title>"


def test_unknown_method_is_not_implemented(server: ReportServer) -> None:
    status, _, _ = _request(server, "BREW", "/")
    assert status == 501


@pytest.mark.parametrize(
    ("name", "mime"),
    [("audio/a.wav", "audio/wav"), ("plot.png", "image/png"), ("map.svg", "image/svg+xml"),
     ("index.html", "text/html; charset=utf-8"), ("data.bin", "application/octet-stream")],
)
def test_mime_types(server: ReportServer, name: str, mime: str) -> None:
    status, headers, _ = _request(server, "GET", f"/report/{name}")
    assert status == 200 and headers["content-type"] == mime
    assert headers["x-content-type-options"] == "nosniff"


def test_range_requests(server: ReportServer) -> None:
    path = "/report/audio/a.wav"
    status, headers, body = _request(server, "GET", path)
    assert status == 200 and body == WAV and headers["accept-ranges"] == "bytes"
    status, headers, body = _request(server, "GET", path, {"Range": "bytes=1000-1099"})
    assert status == 206 and body == WAV[1000:1100]
    assert headers["content-range"] == f"bytes 1000-1099/{len(WAV)}" and headers["content-length"] == "100"
    status, headers, body = _request(server, "GET", path, {"Range": "bytes=10000-"})
    assert status == 206 and body == WAV[10000:]
    status, headers, body = _request(server, "GET", path, {"Range": "bytes=-16"})
    assert status == 206 and body == WAV[-16:]
    status, headers, body = _request(server, "GET", path, {"Range": "bytes=0-999999"})
    assert status == 206 and body == WAV and headers["content-range"] == f"bytes 0-{len(WAV) - 1}/{len(WAV)}"
    status, headers, _ = _request(server, "GET", path, {"Range": f"bytes={len(WAV)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(WAV)}"
    # a stale If-Range means: send the whole file
    status, _, body = _request(server, "GET", path, {"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert status == 200 and body == WAV
    status, headers, body = _request(server, "HEAD", path, {"Range": "bytes=0-9"})
    assert status == 206 and body == b"" and headers["content-length"] == "10"


def test_refuses_foreign_host_headers_on_loopback(server: ReportServer) -> None:
    status, _, _ = _request(server, "GET", "/", {"Host": "attacker.example:9999"})
    assert status == 403
    status, _, _ = _request(server, "GET", "/", {"Host": f"localhost:{server.server_address[1]}"})
    assert status == 200


def test_make_server_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        make_server(tmp_path / "nothing", port=0)


def test_cli_serve_binds_loopback_and_serves(site: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "calyx", "serve", str(site), "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/report/audio/a.wav", headers={"Range": "bytes=0-3"})
        resp = conn.getresponse()
        assert resp.status == 206 and resp.read() == WAV[:4]
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
