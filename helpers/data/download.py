"""Download files so that an interrupted run never leaves a half file that looks whole.

:func:`fetch_file` asks through a ``requests`` session whose adapter carries a
``urllib3`` :class:`~urllib3.util.Retry`: refused or dropped connections and the
statuses 408, 429 and 5xx are retried with exponential backoff (a 4xx fails at
once). The body goes to ``<dest>.part``; a body cut short is resumed from that
file with an HTTP Range request where the server honours it (and started over
where it does not); the SHA-256 is verified when one is given, and only then is
the file renamed to ``dest``. A file that is already there (with the right hash)
costs no network I/O at all.

:func:`fetch_files` does the same for many files in a few threads, with one
progress bar.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from tqdm.auto import tqdm
from urllib3.util import Retry

CHUNK_SIZE = 1 << 16
RETRY_STATUS = frozenset({408, 429, *range(500, 600)})
NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class DownloadError(RuntimeError):
    """A file could not be downloaded; the message names the URL, the file and what to do."""


class _Interrupted(Exception):
    """The body stopped short (or came from the wrong offset): the next request resumes or restarts."""


def session(*, retries: int = 4, backoff: float = 0.5) -> requests.Session:
    """A session that retries connections and the statuses of :data:`RETRY_STATUS` ``retries`` times."""
    retry = Retry(
        total=retries, connect=retries, read=retries, status=retries, other=0, backoff_factor=backoff,
        status_forcelist=RETRY_STATUS, allowed_methods={"GET"}, raise_on_status=False,
    )
    http = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def sha256sum(path: Path) -> str:
    """The SHA-256 of a file, as lowercase hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def part_path(dest: Path) -> Path:
    """Where ``dest`` is written while it downloads: ``<dest>.part``."""
    dest = Path(dest)
    return dest.with_suffix(dest.suffix + ".part")


def fetch_file(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 30,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resuming, retrying, verifying) and return ``dest``."""
    dest = Path(dest)
    if dest.is_file():
        if sha256 is None or sha256sum(dest) == sha256.lower():
            return dest
        dest.unlink()  # a stale or damaged copy: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    keep = (f"Check your connection and run again: the partial file {part_path(dest)} is kept and the download "
            "resumes from it.")
    with session(retries=retries, backoff=backoff) as http:
        for attempt in range(retries + 1):  # the session retries requests; this loop resumes bodies cut short
            try:
                _download(http, url, dest, timeout=timeout, progress=progress)
                break
            except _Interrupted as error:
                if attempt == retries:
                    raise DownloadError(
                        f"could not download {dest.name} from {url} after {retries + 1} attempts ({error}). {keep}"
                    ) from error
            except NETWORK_ERRORS as error:  # the session's retries are spent
                raise DownloadError(
                    f"could not download {dest.name} from {url} after {retries + 1} attempts "
                    f"({type(error).__name__}: {error}). {keep}"
                ) from error
    if sha256 is not None:
        _verify(part_path(dest), sha256, url=url, dest=dest)
    # The .part name (not helpers.files.atomic_write's temporary one) is fixed, so that a later run resumes it.
    os.replace(part_path(dest), dest)
    return dest


def fetch_files(
    jobs: Iterable[tuple[str, Path]],
    *,
    workers: int = 8,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 30,
    progress: bool = True,
    desc: str = "files",
) -> list[Path]:
    """Fetch many ``(url, dest)`` pairs in ``workers`` threads; files already there are skipped."""
    jobs = list(dict.fromkeys((url, Path(dest)) for url, dest in jobs))
    missing = [(url, dest) for url, dest in jobs if not dest.is_file()]
    options = {"retries": retries, "backoff": backoff, "timeout": timeout, "progress": False}
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(missing), unit="file", desc=desc, disable=not (progress and missing)) as bar,
    ):
        futures = [pool.submit(fetch_file, url, dest, **options) for url, dest in missing]
        try:
            for future in as_completed(futures):
                future.result()
                bar.update()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return [dest for _, dest in jobs]


def _download(http: requests.Session, url: str, dest: Path, *, timeout: float, progress: bool) -> None:
    """One request: stream ``url`` into ``<dest>.part``, resuming it where the server allows."""
    part = part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with http.get(url, headers=headers, stream=True, timeout=timeout) as response:
            if offset and response.status_code == 416:  # the partial file is no prefix of this one
                part.unlink()
                return _download(http, url, dest, timeout=timeout, progress=progress)
            _check_status(response, url=url, dest=dest)
            start = _resume_offset(response, part, offset)
            length = response.headers.get("Content-Length")
            total = start + int(length) if length and length.isdigit() else None
            try:
                written = _write(response, part, start=start, total=total, name=dest.name, progress=progress)
            except NETWORK_ERRORS as error:
                raise _Interrupted(f"{type(error).__name__}: {error}") from error
    except NETWORK_ERRORS:
        raise  # the session's retries are spent: fetch_file says so
    except requests.RequestException as error:  # an invalid URL, too many redirects...
        raise DownloadError(f"could not download {dest.name} from {url}: {error}") from error
    if total is not None and written < total:
        raise _Interrupted(f"the connection closed after {written} of {total} bytes")


def _check_status(response: requests.Response, *, url: str, dest: Path) -> None:
    status = response.status_code
    if status in RETRY_STATUS:  # the session's retries are spent
        raise DownloadError(
            f"could not download {dest.name} from {url} after {len(response.raw.retries.history) + 1} attempts "
            f"(HTTP {status} {response.reason}). The server is failing: run again later."
        )
    if status >= 400:
        raise DownloadError(
            f"could not download {dest.name}: {url} answered HTTP {status} {response.reason}. "
            "The file is missing there or the address is wrong: check the URL (and the pinned commit "
            f"or version), or put the file in place by hand at {dest}."
        )


def _resume_offset(response: requests.Response, part: Path, offset: int) -> int:
    """Where the body starts: ``offset`` for a 206 that resumes there, 0 for a whole file (200)."""
    if response.status_code != 206:
        return 0
    content_range = response.headers.get("Content-Range", "")
    if offset and content_range.startswith(f"bytes {offset}-"):
        return offset
    part.unlink(missing_ok=True)
    raise _Interrupted(f"the server sent an unexpected range ({content_range or 'none'}); starting over")


def _write(response: requests.Response, part: Path, *, start: int, total: int | None, name: str, progress: bool) -> int:
    """Append (``start`` > 0) or write the body to ``part``; return the size of ``part``."""
    written = start
    with (
        open(part, "ab" if start else "wb") as file,
        tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=name,
            disable=not progress,
            leave=False,
        ) as bar,
    ):
        for chunk in response.iter_content(CHUNK_SIZE):
            file.write(chunk)
            bar.update(len(chunk))
            written += len(chunk)
    return written


def _verify(part: Path, expected: str, *, url: str, dest: Path) -> None:
    actual = sha256sum(part)
    if actual != expected.lower():
        part.unlink()
        raise DownloadError(
            f"checksum mismatch for {dest.name} from {url}: expected sha256 {expected.lower()}, got {actual}. "
            "The download was deleted; run again, and if this persists the file changed upstream "
            "(update the pinned hash only if you trust the new file)."
        )
