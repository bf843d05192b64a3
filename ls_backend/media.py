"""Task media download into a cache under MODEL_DIR, limited to Label Studio and hosts the user allows.

Image references come from task data, which anyone who can import tasks controls, so every reference
and every redirect is checked before a request is made. A reference is fetched when it is

- a Label Studio media path: ``/data/upload/...``, ``/data/local-files/?d=<relative path>``,
  ``/tasks/<id>/presign/?fileuri=...`` (what LS turns cloud-storage links into) or
  ``/storage-data/uploaded/...``, either relative or as an absolute URL on the LS origin;
  any other LS path (``/api/...``, ``/etc/passwd``), a ``..`` segment (also percent-encoded, once or
  more), an absolute ``d`` or a backslash is refused;
- an http(s) URL on an origin listed in ``AUTOAL_MEDIA_ALLOWED_HOSTS``.

Anything else (other hosts or ports, ``file://`` and other schemes, local paths) is refused.

An allow-list entry is ``host``, ``host:port`` or ``scheme://host[:port]``. Without a port it allows only the
scheme's default port (80 for http, 443 for https); with a port only that port; with a scheme only that
scheme. The LS origin is compared as (scheme, host, port) with default ports filled in.

Every redirect hop is checked on its own: its target must be the LS origin or on the allow list, otherwise
the download fails and the other host receives no request. Presigned cloud-storage links that LS redirects
to (S3, GCS, Azure hosts) must therefore be on the allow list. The LS token is sent only while every hop so
far, the current one included, is on the LS origin; once a chain has left LS, no later hop gets it, even one
back on LS. The fetcher never stores or sends cookies (LS's session cookie would otherwise reach any server
on the LS hostname, whatever its port).

A downloaded file is kept only when it decodes fully as the engine will decode it and its smaller side is at
least ``autoal_engine.data.MIN_SIDE`` pixels. A cached file that no longer decodes (written by an older
version, or damaged) is deleted and counts as a failure for this run; the next run downloads it again.

``fetch_all`` returns a ``FetchResult``: the file of each task whose media could be used, and why each
other task's media could not (404, not an image, too large, refused host or path, ...). LS itself being
unreachable raises ``LabelStudioUnavailable`` so the job is retried later.
"""

from __future__ import annotations

import functools
import hashlib
import http.cookiejar
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from PIL import Image

from ls_backend.labelstudio import LabelStudioClient, LabelStudioUnavailable
from ls_backend.settings import Settings

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}
LS_MEDIA_PREFIXES = ("/data/upload/", "/storage-data/uploaded/")
LS_LOCAL_FILES_PATH = "/data/local-files/"
LS_PRESIGN_PATH = re.compile(r"/tasks/\d+/presign/?")
HOSTNAME = re.compile(r"[a-z0-9.-]+|[0-9a-f:.]*:[0-9a-f:.]*")  # a DNS name or IPv4 address, or an IPv6 address

Origin = tuple[str, str, int]  # (scheme, host, port), default port filled in


class MediaError(ValueError):
    """One media reference cannot be used; the message says why."""


@dataclass(frozen=True)
class FetchResult:
    """What ``fetch_all`` got: task id -> local image file, and task id -> why its media could not be used."""

    paths: dict[int, Path]
    failures: dict[int, str]


@dataclass(frozen=True)
class AllowedHost:
    """One parsed ``AUTOAL_MEDIA_ALLOWED_HOSTS`` entry; ``None`` scheme or port means "not given"."""

    scheme: str | None
    host: str
    port: int | None

    def allows(self, origin: Origin) -> bool:
        """Whether a request to this (scheme, host, port) is allowed by the entry."""
        scheme, host, port = origin
        if self.scheme is not None and scheme != self.scheme:
            return False
        wanted_port = self.port if self.port is not None else DEFAULT_PORTS[scheme]
        return host == self.host and port == wanted_port


def parse_allowed_host(entry: str) -> AllowedHost:
    """An allow-list entry (``host``, ``host:port``, ``http(s)://host[:port]``), or ValueError naming it."""
    text = entry.strip().lower()
    has_scheme = "://" in text
    schemes = tuple(DEFAULT_PORTS) if has_scheme else ("",)
    parts = urlsplit(text if has_scheme else "//" + text)
    try:
        port = parts.port
    except ValueError:
        port = 0
    valid = (
        parts.scheme in schemes
        and HOSTNAME.fullmatch(parts.hostname or "") is not None
        and "@" not in parts.netloc
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
        and not text.endswith(":")
        and port != 0
    )
    if not valid:
        raise ValueError(
            f"AUTOAL_MEDIA_ALLOWED_HOSTS: invalid entry {entry!r} (expected host, host:port or http(s)://host[:port])"
        )
    return AllowedHost(parts.scheme or None, parts.hostname or "", port)


class MediaFetcher:
    def __init__(
        self,
        cache_dir: Path,
        ls: LabelStudioClient | None,
        allowed_hosts: tuple[str, ...] = (),
        max_bytes: int = 50_000_000,
        workers: int = 8,
        timeout: float = 30.0,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.ls = ls
        self.allowed_hosts = tuple(parse_allowed_host(entry) for entry in allowed_hosts)
        self.ls_origin = _origin(ls.url) if ls is not None else None
        self.ls_base_path = urlsplit(ls.url).path.rstrip("/") if ls is not None else ""
        self.max_bytes = max_bytes
        self.workers = workers
        no_cookies = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.http = httpx.Client(timeout=timeout, follow_redirects=False, cookies=no_cookies)

    @classmethod
    def for_settings(cls, settings: Settings, ls: LabelStudioClient | None) -> MediaFetcher:
        """A fetcher with the cache, allow list, size limit, parallelism and timeout from the settings."""
        return cls(
            settings.media_dir,
            ls,
            allowed_hosts=settings.media_allowed_hosts,
            max_bytes=settings.media_max_bytes,
            workers=settings.media_workers,
            timeout=settings.ls_timeout,
        )

    def close(self) -> None:
        self.http.close()

    def fetch_all(self, references: Mapping[int, str], verify_cached: bool = True) -> FetchResult:
        """The local image file of each task whose media could be used, and why the others' could not.

        Downloads are always verified (they decode fully and are large enough). ``verify_cached=False``
        trusts files already in the cache (the fast path, which verifies only the files it embeds:
        `check_image`); by default a cached file is decoded again, since older versions cached files
        unverified."""

        def fetch(item: tuple[int, str]) -> tuple[int, Path | str]:
            task_id, reference = item
            if not isinstance(reference, str) or not reference.strip():
                return task_id, "task has no image reference"
            try:
                return task_id, self.fetch(reference, verify_cached)
            except MediaError as error:
                logger.warning("task %s: media skipped: %s", task_id, error)
                return task_id, str(error)

        result = FetchResult(paths={}, failures={})
        items = list(references.items())
        if not verify_cached:  # a trusted cached file costs a stat, not a thread: only the others go to the pool
            waiting = []
            for item in items:
                cached = self._cached(item[1])
                if cached is None:
                    waiting.append(item)
                else:
                    result.paths[item[0]] = cached
            items = waiting
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for task_id, outcome in pool.map(fetch, items):
                if isinstance(outcome, Path):
                    result.paths[task_id] = outcome
                else:
                    result.failures[task_id] = outcome
        return result

    def _cached(self, reference: object) -> Path | None:
        """The cached file of a reference that may be fetched, else None (not cached, or refused: `fetch`
        then says why)."""
        if not isinstance(reference, str):
            return None
        try:
            cached = self._cache_path(self.resolve(reference)[0])
        except MediaError:
            return None
        return cached if cached.exists() else None

    def fetch(self, reference: str, verify_cached: bool = True) -> Path:
        """The cached file of one media reference, downloading it when it is not cached yet."""
        url, _ = self.resolve(reference)
        cached = self._cache_path(url)
        if cached.exists():
            if verify_cached:
                self._check_cached(cached)
            return cached
        self._download(url, cached)
        return cached

    def resolve(self, reference: str) -> tuple[str, bool]:
        """(absolute URL, whether it is on LS) or MediaError when the reference may not be fetched."""
        if not isinstance(reference, str) or not reference.strip():
            raise MediaError("empty media reference")
        reference = reference.strip()
        _check_characters(reference)
        if reference.startswith("/") and not reference.startswith("//"):
            parts = urlsplit(reference)
            _check_ls_media_path(reference, parts.path, parts.query)
            if self.ls is None:
                raise MediaError(f"{_short(reference)!r} is on Label Studio, but LABEL_STUDIO_URL is not set")
            return self.ls.url + reference, True
        parts = urlsplit(reference)
        if parts.scheme.lower() not in DEFAULT_PORTS or not parts.netloc:
            raise MediaError(
                f"unsupported media reference {_short(reference)!r} (only Label Studio media paths and http(s) URLs)"
            )
        origin = _origin(reference)
        if origin == self.ls_origin:
            if not parts.path.startswith(self.ls_base_path + "/"):
                raise MediaError(f"refused media reference {_short(reference)!r}: not under the Label Studio URL")
            _check_ls_media_path(reference, parts.path[len(self.ls_base_path) :], parts.query)
            return reference, True
        if self._is_allowed(origin):
            return reference, False
        raise MediaError(
            f"host {_show(origin)!r} is not allowed (add it to AUTOAL_MEDIA_ALLOWED_HOSTS): {_short(reference)!r}"
        )

    def _is_allowed(self, origin: Origin) -> bool:
        return any(entry.allows(origin) for entry in self.allowed_hosts)

    def _is_ls(self, url: str) -> bool:
        return self.ls_origin is not None and _origin(url) == self.ls_origin

    def _cache_path(self, url: str) -> Path:
        digest = hashlib.sha256(url.encode()).hexdigest()
        return self.cache_dir / digest[:2] / digest

    def _check_cached(self, path: Path) -> None:
        """Drop a cached file that does not decode (an older version cached files it only verified)."""
        try:
            check_image(path)
        except MediaError as error:
            path.unlink(missing_ok=True)
            raise MediaError(f"cached file {path.name[:16]} was unusable and was removed: {error}") from None

    def _download(self, url: str, destination: Path) -> None:
        with_token = True  # until the chain leaves the LS origin, for good
        for _ in range(MAX_REDIRECTS + 1):
            on_ls = self._is_ls(url)
            with_token = with_token and on_ls
            headers = self.ls.auth_headers() if with_token and self.ls is not None else {}
            try:
                with self.http.stream("GET", url, headers=headers) as response:
                    if response.is_redirect:
                        url = self._redirect_target(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise MediaError(f"HTTP {response.status_code} for {_short(url)}")
                    self._save(response, destination)
                    return
            except httpx.InvalidURL as error:  # _origin read the authority only; httpx reads the rest here
                raise MediaError(f"invalid URL {_short(url)!r}: {error}") from None
            except httpx.TransportError as error:
                if on_ls:
                    raise LabelStudioUnavailable(f"Label Studio media download failed: {error}") from None
                raise MediaError(f"download failed for {_short(url)}: {error}") from None
        raise MediaError(f"too many redirects for {_short(url)}")

    def _redirect_target(self, url: str, location: str) -> str:
        """The absolute target of a redirect from ``url``, or MediaError when it leaves LS and the allow list."""
        if not location:
            raise MediaError(f"redirect without a Location header from {_short(url)}")
        try:
            target = str(httpx.URL(url).join(location))
        except httpx.InvalidURL as error:
            raise MediaError(f"invalid redirect {_short(location)!r} from {_short(url)}: {error}") from None
        origin = _origin(target)
        if origin != self.ls_origin and not self._is_allowed(origin):
            raise MediaError(f"redirect to a host that is not allowed: {_show(origin)!r} (from {_short(url)})")
        return target

    def _save(self, response: httpx.Response, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".part")
        try:
            size = 0
            with os.fdopen(handle, "wb") as file:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise MediaError(f"media larger than {self.max_bytes} bytes")
                    file.write(chunk)
            check_image(Path(temporary))
            os.replace(temporary, destination)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)


def _origin(url: str) -> Origin:
    """(scheme, host, port) of an http(s) URL as httpx will request it, or MediaError.

    Only the URL's scheme and authority decide it: RFC 3986 (and httpx's parser) end the authority at the
    first '/', '?' or '#'. So it is parsed once per distinct "scheme://authority" (a project's 20,000
    references share one or two), and the whole URL is parsed by httpx when it is downloaded."""
    prefix = _AUTHORITY.match(url)
    parsed = _parse_authority(prefix.group(0) if prefix else url)
    if isinstance(parsed, str):
        raise MediaError(f"invalid URL {_short(url)!r}: {parsed}")
    if parsed.scheme not in DEFAULT_PORTS or not parsed.raw_host:
        raise MediaError(f"unsupported URL {_short(url)!r} (only http(s) URLs)")
    if parsed.userinfo:
        raise MediaError(f"refused URL {_short(url)!r}: credentials in the URL")
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    if not 0 < port < 65536:
        raise MediaError(f"invalid port in URL {_short(url)!r}")
    return parsed.scheme, parsed.raw_host.decode("ascii").lower(), port


_AUTHORITY = re.compile(r"[^:/?#]+://[^/?#]*")


@functools.lru_cache(maxsize=256)
def _parse_authority(url: str) -> httpx.URL | str:
    """httpx's parse of "scheme://authority", or why httpx refuses it."""
    try:
        return httpx.URL(url)
    except httpx.InvalidURL as error:
        return str(error)


def _decodings(text: str) -> Iterator[str]:
    """The text, then the text percent-decoded again and again until decoding changes nothing."""
    while True:
        yield text
        decoded = unquote(text)
        if decoded == text:
            return
        text = decoded


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _check_characters(reference: str) -> None:
    """Refuse backslashes and control characters, raw or percent-encoded: parsers disagree on them."""
    for text in _decodings(reference):
        if "\\" in text:
            raise MediaError(f"refused media reference {_short(reference)!r}: backslash")
        if _CONTROL_CHARACTER.search(text):
            raise MediaError(f"refused media reference {_short(reference)!r}: control character")


def _has_dot_dot(text: str) -> bool:
    return any(".." in form.split("/") for form in _decodings(text))


def _check_ls_media_path(reference: str, path: str, query: str) -> None:
    """Refuse an LS path (relative to the LS URL) that is not under a media prefix or that climbs out of one."""
    if _has_dot_dot(path):
        raise MediaError(f"refused media reference {_short(reference)!r}: '..' in the path")
    if path.startswith(LS_MEDIA_PREFIXES):
        return
    parameters = parse_qs(query, keep_blank_values=True)
    if path == LS_LOCAL_FILES_PATH:
        files = parameters.get("d", [])
        if len(files) != 1 or not files[0]:
            raise MediaError(f"refused media reference {_short(reference)!r}: needs one 'd' parameter")
        if _has_dot_dot(files[0]):
            raise MediaError(f"refused media reference {_short(reference)!r}: '..' in the local file path")
        if any(form.startswith("/") for form in _decodings(files[0])):
            raise MediaError(f"refused media reference {_short(reference)!r}: absolute local file path")
        return
    if LS_PRESIGN_PATH.fullmatch(path):
        if not parameters.get("fileuri", [""])[0]:
            raise MediaError(f"refused media reference {_short(reference)!r}: needs a 'fileuri' parameter")
        return
    raise MediaError(
        f"refused media reference {_short(reference)!r}: not a Label Studio media path (/data/upload/, "
        "/data/local-files/?d=, /tasks/<id>/presign/?fileuri=, /storage-data/uploaded/)"
    )


def check_image(path: Path) -> None:
    """MediaError unless the file decodes fully, as the engine will decode it, and is at least MIN_SIDE px."""
    from autoal_engine.data import MIN_SIDE  # here, not at the top: it imports torch

    try:
        image = Image.open(path)
    except Exception as error:  # PIL raises many types for broken files
        raise MediaError(f"not a readable image: {type(error).__name__}: {error}") from None
    with image:
        try:
            image.load()
            image.convert("RGB")
        except Exception as error:
            raise MediaError(f"cannot decode image: {type(error).__name__}: {error}") from None
        width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise MediaError(f"image is {width}x{height} px, smaller than {MIN_SIDE} px")


def _show(origin: Origin) -> str:
    scheme, host, port = origin
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
