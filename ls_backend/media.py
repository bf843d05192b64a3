"""Task media download into a cache under MODEL_DIR, limited to Label Studio and hosts the user allows.

A task's image reference is fetched when it is
- a path on the LS server (``/data/upload/...``, ``/data/local-files/?d=...``, ``/tasks/<id>/presign/...``,
  which is what LS turns cloud-storage links into): sent with the LS token;
- an http(s) URL on the LS host: sent with the LS token;
- an http(s) URL on a host listed in ``AUTOAL_MEDIA_ALLOWED_HOSTS``: sent without credentials.
Anything else (other hosts, other schemes) is refused. Redirects are followed only to those hosts, or
once out of LS (a presigned cloud-storage link LS resolved). The token never leaves the LS host.

A reference that cannot be fetched (404, not an image, too large, refused host) is logged and skipped;
LS itself being unreachable raises ``LabelStudioUnavailable`` so the job is retried later.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
from PIL import Image

from ls_backend.labelstudio import LabelStudioClient, LabelStudioUnavailable
from ls_backend.settings import Settings

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5


class MediaError(ValueError):
    """One media reference cannot be used; the message says why."""


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
        self.allowed_hosts = tuple(host.lower() for host in allowed_hosts)
        self.max_bytes = max_bytes
        self.workers = workers
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)

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

    def fetch_all(self, references: Mapping[int, str]) -> dict[int, Path]:
        """Local image files for the tasks whose media could be fetched (task id -> path)."""
        items = list(references.items())

        def fetch(item: tuple[int, str]) -> tuple[int, Path | None]:
            task_id, reference = item
            try:
                return task_id, self.fetch(reference)
            except MediaError as error:
                logger.warning("task %s: media skipped: %s", task_id, error)
                return task_id, None

        paths: dict[int, Path] = {}
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for task_id, path in pool.map(fetch, items):
                if path is not None:
                    paths[task_id] = path
        return paths

    def fetch(self, reference: str) -> Path:
        """The cached file of one media reference, downloading it when it is not cached yet."""
        url, to_ls = self.resolve(reference)
        cached = self._cache_path(url)
        if cached.exists():
            return cached
        self._download(url, to_ls, cached)
        return cached

    def resolve(self, reference: str) -> tuple[str, bool]:
        """(absolute URL, whether it is on LS) or MediaError when the reference may not be fetched."""
        if not isinstance(reference, str) or not reference.strip():
            raise MediaError("empty media reference")
        reference = reference.strip()
        if reference.startswith("/") and not reference.startswith("//"):
            if self.ls is None:
                raise MediaError(f"{reference!r} is on Label Studio, but LABEL_STUDIO_URL is not set")
            return self.ls.url + reference, True
        parts = urlsplit(reference)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MediaError(f"unsupported media reference {reference[:120]!r} (only LS paths and http(s) URLs)")
        if self._is_ls(reference):
            return reference, True
        if parts.hostname.lower() in self.allowed_hosts:
            return reference, False
        raise MediaError(f"host {parts.hostname!r} is not allowed (add it to AUTOAL_MEDIA_ALLOWED_HOSTS)")

    def _is_ls(self, url: str) -> bool:
        if self.ls is None:
            return False
        ours, theirs = urlsplit(self.ls.url), urlsplit(url)
        return (ours.scheme, ours.hostname, ours.port) == (theirs.scheme, theirs.hostname, theirs.port)

    def _cache_path(self, url: str) -> Path:
        digest = hashlib.sha256(url.encode()).hexdigest()
        return self.cache_dir / digest[:2] / digest

    def _download(self, url: str, to_ls: bool, destination: Path) -> None:
        came_from_ls = False
        for _ in range(MAX_REDIRECTS + 1):
            headers = self.ls.auth_headers() if to_ls and self.ls is not None else {}
            try:
                with self.http.stream("GET", url, headers=headers) as response:
                    if response.is_redirect:
                        target = urljoin(url, response.headers.get("location", ""))
                        came_from_ls = to_ls
                        to_ls = self._is_ls(target)
                        host = (urlsplit(target).hostname or "").lower()
                        if not (to_ls or came_from_ls or host in self.allowed_hosts):
                            raise MediaError(f"redirect to a host that is not allowed: {host!r}")
                        url = target
                        continue
                    if response.status_code != 200:
                        raise MediaError(f"HTTP {response.status_code} for {url[:160]}")
                    self._save(response, destination)
                    return
            except httpx.TransportError as error:
                if to_ls:
                    raise LabelStudioUnavailable(f"Label Studio media download failed: {error}") from None
                raise MediaError(f"download failed for {url[:160]}: {error}") from None
        raise MediaError(f"too many redirects for {url[:160]}")

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
            _check_image(Path(temporary))
            os.replace(temporary, destination)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)


def _check_image(path: Path) -> None:
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types for broken files
        raise MediaError(f"not a readable image: {type(error).__name__}: {error}") from None
