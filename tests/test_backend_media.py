"""ls_backend.media against real local HTTP servers: which hosts, which credentials, which failures."""

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from ls_backend.labelstudio import LabelStudioClient, LabelStudioUnavailable
from ls_backend.media import MediaError, MediaFetcher


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, format="PNG")
    return buffer.getvalue()


class Server:
    """A loopback HTTP server with fixed routes that records the Authorization header of each request."""

    def __init__(self, routes):
        self.routes = routes
        self.seen: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's interface
                server.seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = server.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    other = Server({"/img.png": (200, {}, png_bytes())})
    ls = Server(
        {
            "/data/upload/1/a.png": (200, {"Content-Type": "image/png"}, png_bytes()),
            "/data/upload/1/text.png": (200, {}, b"this is not an image"),
            "/tasks/1/presign/?fileuri=abc": (302, {"Location": f"http://localhost:{other.port}/img.png"}, b""),
            "/big.png": (200, {}, png_bytes() + b"\0" * 5000),
        }
    )
    other.routes["/out"] = (302, {"Location": "http://localhost:9/elsewhere.png"}, b"")
    yield ls, other
    ls.close()
    other.close()


@pytest.fixture
def fetcher(servers, tmp_path):
    ls, _ = servers
    client = LabelStudioClient(f"http://127.0.0.1:{ls.port}", "legacytoken123", retries=0)
    fetcher = MediaFetcher(tmp_path / "media", client, allowed_hosts=("127.0.0.1",), max_bytes=2000)
    yield fetcher
    fetcher.close()


def test_ls_upload_is_fetched_with_the_token_and_cached(fetcher, servers):
    ls, _ = servers
    path = fetcher.fetch("/data/upload/1/a.png")
    assert Image.open(path).size == (8, 8)
    assert ls.seen == [("/data/upload/1/a.png", "Token legacytoken123")]
    assert fetcher.fetch("/data/upload/1/a.png") == path
    assert len(ls.seen) == 1  # second time from the cache
    assert fetcher.fetch(f"http://127.0.0.1:{ls.port}/data/upload/1/a.png") == path  # same URL, same file
    assert len(ls.seen) == 1


def test_allowed_host_gets_no_credentials(fetcher, servers):
    _, other = servers
    fetcher.fetch(f"http://127.0.0.1:{other.port}/img.png")
    assert other.seen == [("/img.png", None)]


def test_link_resolved_by_ls_may_leave_ls_once_without_the_token(fetcher, servers):
    ls, other = servers
    path = fetcher.fetch("/tasks/1/presign/?fileuri=abc")
    assert path.exists()
    assert ls.seen[0][1] == "Token legacytoken123"
    assert other.seen == [("/img.png", None)]


def test_refused_references(fetcher, servers):
    _, other = servers
    with pytest.raises(MediaError, match="not allowed"):
        fetcher.fetch(f"http://localhost:{other.port}/img.png")
    with pytest.raises(MediaError, match="unsupported media reference"):
        fetcher.fetch("s3://bucket/key.png")
    with pytest.raises(MediaError, match="unsupported media reference"):
        fetcher.fetch("file:///etc/passwd")
    with pytest.raises(MediaError, match="redirect to a host that is not allowed"):
        fetcher.fetch(f"http://127.0.0.1:{other.port}/out")
    assert other.seen == [("/out", None)]


def test_broken_media_is_an_error_for_that_file_only(fetcher):
    with pytest.raises(MediaError, match="HTTP 404"):
        fetcher.fetch("/data/upload/1/missing.png")
    with pytest.raises(MediaError, match="not a readable image"):
        fetcher.fetch("/data/upload/1/text.png")
    with pytest.raises(MediaError, match="larger than 2000 bytes"):
        fetcher.fetch("/big.png")
    paths = fetcher.fetch_all({1: "/data/upload/1/a.png", 2: "/data/upload/1/missing.png", 3: "", 4: "/big.png"})
    assert list(paths) == [1]
    assert not list(fetcher.cache_dir.rglob("*.part"))  # no half-written files left


def test_ls_unreachable_is_reported_as_unavailable(tmp_path):
    client = LabelStudioClient("http://127.0.0.1:9", "legacytoken123", retries=0)
    fetcher = MediaFetcher(tmp_path / "media", client)
    with pytest.raises(LabelStudioUnavailable):
        fetcher.fetch_all({1: "/data/upload/1/a.png"})
    fetcher.close()


def test_without_ls_only_allowed_hosts_work(tmp_path):
    fetcher = MediaFetcher(tmp_path / "media", None, allowed_hosts=("images.example.com",))
    assert fetcher.resolve("https://images.example.com/a.png") == ("https://images.example.com/a.png", False)
    with pytest.raises(MediaError, match="LABEL_STUDIO_URL is not set"):
        fetcher.resolve("/data/upload/1/a.png")
    fetcher.close()
