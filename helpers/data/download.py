"""Download files so that an interrupted run never leaves a half file that looks whole.

:func:`fetch_file` checks the HTTP status (a 4xx fails at once, a 5xx or a
dropped connection is retried with exponential backoff), writes to
``<dest>.part``, resumes that partial file with an HTTP Range request where the
server honours it (and starts over where it does not), verifies the SHA-256
when one is given, and only then renames the file to ``dest``. A file that is
already there (with the right hash) costs no network I/O at all.

:func:`fetch_files` does the same for many files in a few threads, with one
progress bar.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import requests
from tqdm.auto import tqdm

CHUNK_SIZE = 1 << 16
RETRY_STATUS = {408, 429}  # and every 5xx
NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class DownloadError(RuntimeError):
    """A file could not be downloaded; the message names the URL, the file and what to do."""


class _Retry(Exception):
    """A failure worth another try: a server error, a dropped connection, a short body."""


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
    for attempt in range(retries + 1):
        try:
            _download(url, dest, timeout=timeout, progress=progress)
            break
        except _Retry as error:
            if attempt == retries:
                raise DownloadError(
                    f"could not download {dest.name} from {url} after {retries + 1} attempts ({error}). "
                    f"Check your connection and run again: the partial file {part_path(dest)} is kept "
                    "and the download resumes from it."
                ) from error
            time.sleep(backoff * 2**attempt)
    if sha256 is not None:
        _verify(part_path(dest), sha256, url=url, dest=dest)
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


def _download(url: str, dest: Path, *, timeout: float, progress: bool) -> None:
    """One attempt: stream ``url`` into ``<dest>.part``, resuming it where the server allows."""
    part = part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
            if offset and response.status_code == 416:  # the partial file is no prefix of this one
                part.unlink()
                return _download(url, dest, timeout=timeout, progress=progress)
            _check_status(response, url=url, dest=dest)
            start = _resume_offset(response, part, offset)
            length = response.headers.get("Content-Length")
            total = start + int(length) if length and length.isdigit() else None
            written = _write(response, part, start=start, total=total, name=dest.name, progress=progress)
    except NETWORK_ERRORS as error:
        raise _Retry(f"{type(error).__name__}: {error}") from error
    except requests.RequestException as error:
        raise DownloadError(f"could not download {dest.name} from {url}: {error}") from error
    if total is not None and written < total:
        raise _Retry(f"the connection closed after {written} of {total} bytes")


def _check_status(response: requests.Response, *, url: str, dest: Path) -> None:
    status = response.status_code
    if status in RETRY_STATUS or status >= 500:
        raise _Retry(f"HTTP {status} {response.reason}")
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
    raise _Retry(f"the server sent an unexpected range ({content_range or 'none'}); starting over")


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
