"""ls_backend.media against real local HTTP servers: which hosts, which credentials, which failures."""

import io
import random
import re
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from ls_backend.labelstudio import LabelStudioClient, LabelStudioUnavailable
from ls_backend.media import FetchResult, MediaError, MediaFetcher


def png_bytes(size: tuple[int, int] = (8, 8), noise: bool = False) -> bytes:
    """A grayscale PNG: flat gray, or random pixels (which do not compress, so the file is larger)."""
    if noise:
        image = Image.frombytes("L", size, random.Random(0).randbytes(size[0] * size[1]))
    else:
        image = Image.new("L", size, 128)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def truncated_png() -> bytes:
    """A PNG with well-formed chunks whose pixel data stops halfway: PIL's verify() passes it, decoding fails."""
    data = png_bytes(size=(32, 32), noise=True)
    out, position = data[:8], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IDAT":
            body = body[: len(body) // 2]
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return out


class Server:
    """A loopback HTTP server with fixed routes that records the Authorization and Cookie headers of requests."""

    def __init__(self, routes):
        self.routes = routes
        self.seen: list[tuple[str, str | None]] = []
        self.cookies: list[str | None] = []  # the Cookie header of each request
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's interface
                server.seen.append((self.path, self.headers.get("Authorization")))
                server.cookies.append(self.headers.get("Cookie"))
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
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    noisy = png_bytes(size=(32, 32), noise=True)
    other = Server({"/img.png": (200, {}, png_bytes())})
    outsider = Server({"/img.png": (200, {}, png_bytes())})  # on 127.0.0.1 too, but its port is not allowed
    ls = Server(
        {
            "/data/upload/1/a.png": (200, {"Content-Type": "image/png"}, png_bytes()),
            "/data/upload/1/b.png": (200, {}, png_bytes(size=(9, 9))),
            "/data/upload/1/text.png": (200, {}, b"this is not an image"),
            "/data/upload/1/half.png": (200, {}, noisy[: len(noisy) // 2]),
            "/data/upload/1/truncated.png": (200, {}, truncated_png()),
            "/data/upload/1/tiny.png": (200, {}, png_bytes(size=(4, 4))),
            "/data/upload/1/cookie.png": (200, {"Set-Cookie": "sessionid=secret123; Path=/"}, png_bytes()),
            "/tasks/1/presign/?fileuri=abc": (302, {"Location": f"http://127.0.0.1:{other.port}/img.png"}, b""),
            "/tasks/2/presign/?fileuri=abc": (302, {"Location": f"http://127.0.0.1:{outsider.port}/img.png"}, b""),
            "/tasks/3/presign/?fileuri=abc": (302, {"Location": f"http://127.0.0.1:{other.port}/back"}, b""),
            "/tasks/4/presign/?fileuri=abc": (302, {"Location": "/data/upload/1/b.png"}, b""),
            "/data/upload/1/big.png": (200, {}, png_bytes() + b"\0" * 5000),
        }
    )
    other.routes["/out"] = (302, {"Location": "http://localhost:9/elsewhere.png"}, b"")
    other.routes["/back"] = (302, {"Location": f"http://127.0.0.1:{ls.port}/data/upload/1/b.png"}, b"")
    yield ls, other, outsider
    ls.close()
    other.close()
    outsider.close()


def make_fetcher(tmp_path, ls, *allowed):
    client = LabelStudioClient(f"http://127.0.0.1:{ls.port}", "legacytoken123", retries=0)
    return MediaFetcher(tmp_path / "media", client, allowed_hosts=allowed, max_bytes=2000)


@pytest.fixture
def fetcher(servers, tmp_path):
    ls, other, _ = servers
    fetcher = make_fetcher(tmp_path, ls, f"127.0.0.1:{other.port}")
    yield fetcher
    fetcher.close()


def test_ls_upload_is_fetched_with_the_token_and_cached(fetcher, servers):
    ls, _, _ = servers
    path = fetcher.fetch("/data/upload/1/a.png")
    assert Image.open(path).size == (8, 8)
    assert ls.seen == [("/data/upload/1/a.png", "Token legacytoken123")]
    assert fetcher.fetch("/data/upload/1/a.png") == path
    assert len(ls.seen) == 1  # second time from the cache
    assert fetcher.fetch(f"http://127.0.0.1:{ls.port}/data/upload/1/a.png") == path  # same URL, same file
    assert len(ls.seen) == 1


def test_allowed_host_gets_no_credentials(fetcher, servers):
    _, other, _ = servers
    fetcher.fetch(f"http://127.0.0.1:{other.port}/img.png")
    assert other.seen == [("/img.png", None)]


def test_link_resolved_by_ls_may_go_to_an_allowed_host_without_the_token(fetcher, servers):
    ls, other, _ = servers
    path = fetcher.fetch("/tasks/1/presign/?fileuri=abc")
    assert path.exists()
    assert ls.seen == [("/tasks/1/presign/?fileuri=abc", "Token legacytoken123")]
    assert other.seen == [("/img.png", None)]


def test_link_resolved_by_ls_may_not_go_to_a_host_that_is_not_allowed(fetcher, servers):
    ls, _, outsider = servers
    with pytest.raises(MediaError, match=f"redirect to a host that is not allowed: 'http://127.0.0.1:{outsider.port}'"):
        fetcher.fetch("/tasks/2/presign/?fileuri=abc")
    assert len(ls.seen) == 1
    assert outsider.seen == []  # refused before any request


def test_redirect_within_ls_keeps_the_token(fetcher, servers):
    ls, _, _ = servers
    fetcher.fetch("/tasks/4/presign/?fileuri=abc")
    assert ls.seen == [
        ("/tasks/4/presign/?fileuri=abc", "Token legacytoken123"),
        ("/data/upload/1/b.png", "Token legacytoken123"),
    ]


def test_token_is_not_sent_again_once_a_chain_left_ls(fetcher, servers):
    ls, other, _ = servers
    path = fetcher.fetch("/tasks/3/presign/?fileuri=abc")
    assert Image.open(path).size == (9, 9)
    assert other.seen == [("/back", None)]
    assert ls.seen == [("/tasks/3/presign/?fileuri=abc", "Token legacytoken123"), ("/data/upload/1/b.png", None)]


def test_allow_list_entry_with_a_port_allows_only_that_port(servers, tmp_path):
    ls, other, outsider = servers
    fetcher = make_fetcher(tmp_path, ls, f"127.0.0.1:{other.port}")
    assert fetcher.fetch(f"http://127.0.0.1:{other.port}/img.png").exists()
    with pytest.raises(MediaError, match=f"host 'http://127.0.0.1:{outsider.port}' is not allowed"):
        fetcher.fetch(f"http://127.0.0.1:{outsider.port}/img.png")
    assert outsider.seen == []
    fetcher.close()


def test_allow_list_entry_without_a_port_allows_only_the_default_port(servers, tmp_path):
    ls, other, _ = servers
    fetcher = make_fetcher(tmp_path, ls, "127.0.0.1")
    with pytest.raises(MediaError, match="is not allowed"):
        fetcher.fetch(f"http://127.0.0.1:{other.port}/img.png")
    assert other.seen == []
    assert fetcher.resolve("http://127.0.0.1/a.png") == ("http://127.0.0.1/a.png", False)
    assert fetcher.resolve("https://127.0.0.1:443/a.png") == ("https://127.0.0.1:443/a.png", False)
    with pytest.raises(MediaError, match="is not allowed"):
        fetcher.resolve("https://127.0.0.1:80/a.png")
    fetcher.close()


def test_allow_list_entry_with_a_scheme_allows_only_that_scheme(tmp_path):
    fetcher = MediaFetcher(tmp_path / "media", None, allowed_hosts=("https://img.example.com", "http://a.example:81"))
    assert fetcher.resolve("https://img.example.com/a.png")[1] is False
    assert fetcher.resolve("https://IMG.example.com:443/a.png")[1] is False
    assert fetcher.resolve("http://a.example:81/a.png")[1] is False
    for refused in ("http://img.example.com/a.png", "https://img.example.com:8443/a.png", "https://a.example:81/a.png"):
        with pytest.raises(MediaError, match="is not allowed"):
            fetcher.resolve(refused)
    fetcher.close()


@pytest.mark.parametrize(
    "entry",
    [
        "ftp://h.example",
        "h.example/path",
        "h.example:abc",
        "h.example:0",
        "*.example.com",
        "user@h.example",
        "h.example:",
        "h.example?x=1",
    ],
)
def test_invalid_allow_list_entry_is_rejected(entry, tmp_path):
    with pytest.raises(ValueError, match=f"AUTOAL_MEDIA_ALLOWED_HOSTS: invalid entry {re.escape(repr(entry))}"):
        MediaFetcher(tmp_path / "media", None, allowed_hosts=("ok.example", entry))


def test_ls_origin_fills_in_the_default_port(tmp_path):
    client = LabelStudioClient("http://ls.example", "legacytoken123", retries=0)
    fetcher = MediaFetcher(tmp_path / "media", client)
    url = "http://ls.example:80/data/upload/1/a.png"
    assert fetcher.resolve(url) == (url, True)
    assert fetcher.resolve("http://LS.example/data/upload/1/a.png")[1] is True
    for other_origin in ("https://ls.example/data/upload/1/a.png", "http://ls.example:8080/data/upload/1/a.png"):
        with pytest.raises(MediaError, match="is not allowed"):
            fetcher.resolve(other_origin)
    fetcher.close()


def test_no_cookie_is_kept_or_sent(fetcher, servers):
    ls, other, _ = servers
    fetcher.fetch("/data/upload/1/cookie.png")
    fetcher.fetch(f"http://127.0.0.1:{other.port}/img.png")  # same hostname as LS, other port
    fetcher.fetch("/data/upload/1/a.png")
    assert other.cookies == [None]
    assert ls.cookies == [None, None]


def test_refused_references(fetcher, servers):
    _, other, _ = servers
    with pytest.raises(MediaError, match="not allowed"):
        fetcher.fetch(f"http://localhost:{other.port}/img.png")
    with pytest.raises(MediaError, match="unsupported media reference"):
        fetcher.fetch("s3://bucket/key.png")
    with pytest.raises(MediaError, match="unsupported media reference"):
        fetcher.fetch("file:///etc/passwd")
    with pytest.raises(MediaError, match="redirect to a host that is not allowed"):
        fetcher.fetch(f"http://127.0.0.1:{other.port}/out")
    assert other.seen == [("/out", None)]


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("file:///etc/passwd", "unsupported media reference"),
        ("/etc/passwd", "not a Label Studio media path"),
        ("../x.png", "unsupported media reference"),
        ("//evil.example/x.png", "unsupported media reference"),
        ("/api/projects", "not a Label Studio media path"),
        ("/data/local-files/?d=../../etc/passwd", "'..' in the local file path"),
        ("/data/local-files/?d=%2e%2e/%2e%2e/etc/passwd", "'..' in the local file path"),
        ("/data/local-files/?d=%2E%2e/x.png", "'..' in the local file path"),
        ("/data/local-files/?d=%252e%252e/x.png", "'..' in the local file path"),
        ("/data/local-files/?d=/etc/passwd", "absolute local file path"),
        ("/data/local-files/?d=%2Fetc%2Fpasswd", "absolute local file path"),
        ("/data/local-files/", "needs one 'd' parameter"),
        ("/data/local-files/?d=a.png&d=b.png", "needs one 'd' parameter"),
        ("/data/upload/../../api/projects", "'..' in the path"),
        ("/data/upload/%2e%2e/x.png", "'..' in the path"),
        ("/data/upload/%252e%252e/x.png", "'..' in the path"),
        ("/data/upload/..%2f..%2fapi/projects", "'..' in the path"),
        ("/data/upload/1\\..\\..\\x.png", "backslash"),
        ("/data/upload/1%5Cx.png", "backslash"),
        ("/data/upload/1/a.png%00.txt", "control character"),
        ("/tasks/1/presign/", "needs a 'fileuri' parameter"),
        ("/tasks/x/presign/?fileuri=abc", "not a Label Studio media path"),
        ("http://127.0.0.1:{ls}/data/upload/../../api/projects", "'..' in the path"),
        ("http://127.0.0.1:{ls}/api/projects", "not a Label Studio media path"),
        ("http://user:pw@127.0.0.1:{ls}/data/upload/1/a.png", "credentials in the URL"),
    ],
)
def test_refused_ls_paths(fetcher, servers, reference, reason):
    ls, _, _ = servers
    reference = reference.replace("{ls}", str(ls.port))
    with pytest.raises(MediaError, match=re.escape(reason)) as raised:
        fetcher.fetch(reference)
    assert repr(reference) in str(raised.value)  # the message names the reference
    assert ls.seen == []


def test_ls_media_paths_are_accepted(fetcher, servers):
    ls, _, _ = servers
    base = f"http://127.0.0.1:{ls.port}"
    for reference in (
        "/data/upload/1/a.png",
        "/data/local-files/?d=images/cats/a%20b.png",
        "/tasks/12/presign/?fileuri=czM6Ly9idWNrZXQva2V5LnBuZw==",
        "/storage-data/uploaded/?filepath=1/a.png",
        "/storage-data/uploaded/1/a.png",
    ):
        assert fetcher.resolve(reference) == (base + reference, True)
    assert fetcher.resolve(base + "/data/upload/1/a.png") == (base + "/data/upload/1/a.png", True)


def test_long_references_are_shortened_in_messages(fetcher):
    with pytest.raises(MediaError) as raised:
        fetcher.fetch("/etc/" + "x" * 500)
    assert len(str(raised.value)) < 300
    assert "..." in str(raised.value)


def test_broken_media_is_an_error_for_that_file_only(fetcher):
    with pytest.raises(MediaError, match="HTTP 404"):
        fetcher.fetch("/data/upload/1/missing.png")
    with pytest.raises(MediaError, match="not a readable image"):
        fetcher.fetch("/data/upload/1/text.png")
    with pytest.raises(MediaError, match="larger than 2000 bytes"):
        fetcher.fetch("/data/upload/1/big.png")
    result = fetcher.fetch_all(
        {1: "/data/upload/1/a.png", 2: "/data/upload/1/missing.png", 3: "", 4: "/data/upload/1/big.png"}
    )
    assert isinstance(result, FetchResult)
    assert list(result.paths) == [1]
    assert result.failures == {
        2: f"HTTP 404 for {fetcher.ls.url}/data/upload/1/missing.png",
        3: "task has no image reference",
        4: "media larger than 2000 bytes",
    }
    assert not list(fetcher.cache_dir.rglob("*.part"))  # no half-written files left


def test_images_the_engine_cannot_use_are_reported(fetcher):
    result = fetcher.fetch_all(
        {
            1: "/data/upload/1/a.png",
            2: "/data/upload/1/truncated.png",
            3: "/data/upload/1/tiny.png",
            4: "/data/upload/1/half.png",
            5: "/etc/passwd",
        }
    )
    assert list(result.paths) == [1]
    assert Image.open(result.paths[1]).size == (8, 8)
    assert sorted(result.failures) == [2, 3, 4, 5]
    assert result.failures[2].startswith("cannot decode image: ")
    assert "truncated" in result.failures[2]
    assert result.failures[3] == "image is 4x4 px, smaller than 8 px"
    assert re.match("(cannot decode image|not a readable image): ", result.failures[4])
    assert "not a Label Studio media path" in result.failures[5]
    assert sorted(path.name for path in fetcher.cache_dir.rglob("*") if path.is_file()) == [result.paths[1].name]


def test_a_corrupt_cached_file_is_dropped_and_fetched_again_next_time(fetcher, servers):
    ls, _, _ = servers
    path = fetcher.fetch("/data/upload/1/a.png")
    path.write_bytes(truncated_png())  # as an older version, which only verify()-ed, may have cached it
    result = fetcher.fetch_all({7: "/data/upload/1/a.png"})
    assert result.paths == {}
    assert "was unusable and was removed: cannot decode image" in result.failures[7]
    assert not path.exists()
    assert len(ls.seen) == 1  # not downloaded again in the same run
    assert fetcher.fetch_all({7: "/data/upload/1/a.png"}).paths == {7: path}
    assert len(ls.seen) == 2
    assert Image.open(path).size == (8, 8)


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


def test_trusting_the_cache_still_refuses_what_may_not_be_fetched_and_downloads_the_rest(servers, tmp_path):
    ls, other, _ = servers
    allowed = make_fetcher(tmp_path, ls, f"127.0.0.1:{other.port}")
    cached = allowed.fetch(f"http://127.0.0.1:{other.port}/img.png")
    allowed.close()
    fetcher = make_fetcher(tmp_path, ls)  # the same cache; the other host is no longer allowed
    result = fetcher.fetch_all(
        {1: f"http://127.0.0.1:{other.port}/img.png", 2: "/data/upload/1/a.png", 3: 42, 4: ""},
        verify_cached=False,
    )
    assert cached.exists() and 1 not in result.paths and "not allowed" in result.failures[1]
    assert Image.open(result.paths[2]).size == (8, 8) and ls.seen == [("/data/upload/1/a.png", "Token legacytoken123")]
    assert result.failures[3] == result.failures[4] == "task has no image reference"
    assert fetcher.fetch_all({2: "/data/upload/1/a.png"}, verify_cached=False).paths == {2: result.paths[2]}
    assert len(ls.seen) == 1  # the second time from the cache, in the same pass
    fetcher.close()


def test_a_url_httpx_cannot_request_is_a_media_error_not_a_crash(fetcher, servers):
    _, other, _ = servers
    reference = f"http://127.0.0.1:{other.port}/" + "a" * 70_000  # longer than httpx's limit for a URL
    result = fetcher.fetch_all({5: reference})
    assert result.paths == {} and "invalid URL" in result.failures[5]
    assert other.seen == []
