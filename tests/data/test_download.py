"""fetch_file / fetch_files against a local server with injected faults (no internet)."""

from __future__ import annotations

import hashlib
import random

import pytest
from http_server import FaultyServer

from helpers.data.download import (
    DownloadError,
    fetch_file,
    fetch_files,
    part_path,
    sha256sum,
)

FAST = {"backoff": 0, "progress": False}


@pytest.fixture
def www(tmp_path):
    """A served folder with a few 200 KB files of random bytes."""
    folder = tmp_path / "www"
    (folder / "images").mkdir(parents=True)
    rng = random.Random(0)
    for name in ("blob.bin", "images/a.png", "images/b c%1.png"):
        (folder / name).write_bytes(rng.randbytes(200_000))
    return folder


@pytest.fixture(params=[True, False], ids=["range", "no-range"])
def server(request, www):
    with FaultyServer(www, prefix="/owner/repo/0123abc", range_support=request.param) as running:
        yield running


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "out" / "blob.bin"


def expected(www, name="blob.bin"):
    return (www / name).read_bytes()


def test_downloads_verifies_and_leaves_no_part_file(server, www, dest):
    digest = hashlib.sha256(expected(www)).hexdigest()
    assert fetch_file(f"{server.url}/blob.bin", dest, sha256=digest, **FAST) == dest
    assert dest.read_bytes() == expected(www)
    assert not part_path(dest).exists()


def test_present_file_costs_no_request(server, www, dest):
    fetch_file(f"{server.url}/blob.bin", dest, **FAST)
    asked = len(server.requests)
    server.stop()
    digest = sha256sum(dest)
    assert fetch_file(f"{server.url}/blob.bin", dest, sha256=digest, **FAST) == dest
    assert len(server.requests) == asked


def test_present_file_with_wrong_hash_is_fetched_again(server, www, dest):
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"stale")
    fetch_file(f"{server.url}/blob.bin", dest, sha256=hashlib.sha256(expected(www)).hexdigest(), **FAST)
    assert dest.read_bytes() == expected(www)


def test_dropped_connection_is_retried_and_completes(server, www, dest):
    server.fail("blob.bin", "drop")
    fetch_file(f"{server.url}/blob.bin", dest, retries=2, **FAST)
    assert dest.read_bytes() == expected(www)
    (_, first), (_, second) = server.requests
    assert first is None
    assert 0 < int(second.removeprefix("bytes=").rstrip("-")) <= 100_000  # the retry asks for the rest


def test_interrupted_download_is_never_taken_as_complete(server, www, dest):
    url = f"{server.url}/blob.bin"
    server.fail("blob.bin", "drop")
    with pytest.raises(DownloadError) as error:
        fetch_file(url, dest, retries=0, **FAST)
    assert not dest.exists()
    assert 0 < part_path(dest).stat().st_size <= 100_000  # kept, to resume from
    assert "blob.bin" in str(error.value) and url in str(error.value)
    fetch_file(url, dest, **FAST)  # the re-run resumes (or restarts) and completes
    assert dest.read_bytes() == expected(www)
    assert not part_path(dest).exists()


def test_resume_without_range_support_restarts_cleanly(www, dest):
    with FaultyServer(www, range_support=False) as server:
        part_path(dest).parent.mkdir(parents=True)
        part_path(dest).write_bytes(b"garbage that is no prefix of the file")
        fetch_file(f"{server.url}/blob.bin", dest, **FAST)
    assert dest.read_bytes() == expected(www)


def test_partial_file_longer_than_the_file_restarts(server, www, dest):
    part_path(dest).parent.mkdir(parents=True)
    part_path(dest).write_bytes(b"x" * 300_000)
    fetch_file(f"{server.url}/blob.bin", dest, **FAST)
    assert dest.read_bytes() == expected(www)


def test_unexpected_range_starts_over(www, dest):
    with FaultyServer(www) as server:
        part_path(dest).parent.mkdir(parents=True)
        part_path(dest).write_bytes(expected(www)[:1000])
        server.fail("blob.bin", "offrange")
        fetch_file(f"{server.url}/blob.bin", dest, retries=1, **FAST)
        assert [header for _, header in server.requests] == ["bytes=1000-", None]
    assert dest.read_bytes() == expected(www)


def test_server_error_is_retried(server, www, dest):
    server.fail("blob.bin", "500")
    fetch_file(f"{server.url}/blob.bin", dest, retries=1, **FAST)
    assert dest.read_bytes() == expected(www)
    assert len(server.requests) == 2


@pytest.mark.parametrize("statuses", [("408",), ("429",), ("503", "502", "504")])
def test_busy_and_failing_servers_are_retried(server, www, dest, statuses):
    server.fail("blob.bin", *statuses)
    fetch_file(f"{server.url}/blob.bin", dest, retries=len(statuses), **FAST)
    assert dest.read_bytes() == expected(www)
    assert len(server.requests) == len(statuses) + 1


def test_a_client_error_other_than_408_and_429_is_not_retried(server, dest):
    server.fail("blob.bin", "403")
    with pytest.raises(DownloadError, match="HTTP 403"):
        fetch_file(f"{server.url}/blob.bin", dest, retries=3, **FAST)
    assert len(server.requests) == 1


def test_server_errors_past_the_retries_fail_clearly(server, dest):
    server.fail("blob.bin", "500", "500")
    with pytest.raises(DownloadError, match=r"blob\.bin.*after 2 attempts.*HTTP 500"):
        fetch_file(f"{server.url}/blob.bin", dest, retries=1, **FAST)
    assert not dest.exists()


def test_missing_file_fails_at_once(server, tmp_path):
    url = f"{server.url}/images/missing.png"
    with pytest.raises(DownloadError, match="HTTP 404") as error:
        fetch_file(url, tmp_path / "missing.png", retries=3, **FAST)
    assert url in str(error.value) and "missing.png" in str(error.value)
    assert len(server.requests) == 1  # a 4xx is not retried
    assert not (tmp_path / "missing.png").exists()


def test_checksum_mismatch_deletes_the_download(server, www, dest):
    digest = hashlib.sha256(expected(www)).hexdigest()
    server.fail("blob.bin", "corrupt")
    with pytest.raises(DownloadError) as error:
        fetch_file(f"{server.url}/blob.bin", dest, sha256=digest, **FAST)
    message = str(error.value)
    corrupt = hashlib.sha256(bytes(b ^ 0xFF for b in expected(www)[:16]) + expected(www)[16:]).hexdigest()
    assert "blob.bin" in message and digest in message and corrupt in message
    assert not dest.exists() and not part_path(dest).exists()
    fetch_file(f"{server.url}/blob.bin", dest, sha256=digest, **FAST)
    assert sha256sum(dest) == digest


def test_connection_refused_names_the_url(www, dest):
    server = FaultyServer(www).start()
    url = f"{server.url}/blob.bin"
    server.stop()
    with pytest.raises(DownloadError, match="after 2 attempts") as error:
        fetch_file(url, dest, retries=1, **FAST)
    assert url in str(error.value)
    assert not dest.exists()


def test_names_with_percent_and_space_are_quoted(server, www, tmp_path):
    from urllib.parse import quote

    dest = tmp_path / "b c%1.png"
    fetch_file(f"{server.url}/images/{quote('b c%1.png')}", dest, **FAST)
    assert dest.read_bytes() == expected(www, "images/b c%1.png")


def test_fetch_files_in_threads_with_a_fault(server, www, tmp_path):
    names = ["blob.bin", "images/a.png", "images/b c%1.png"]
    server.fail("images/a.png", "drop")
    jobs = [(f"{server.url}/{name.replace('%', '%25').replace(' ', '%20')}", tmp_path / name) for name in names]
    assert fetch_files(jobs, workers=3, **FAST) == [tmp_path / name for name in names]
    for name in names:
        assert (tmp_path / name).read_bytes() == expected(www, name)
    asked = len(server.requests)
    fetch_files(jobs, **FAST)
    assert len(server.requests) == asked  # nothing asked again


def test_fetch_files_raises_the_first_failure(server, tmp_path):
    jobs = [(f"{server.url}/blob.bin", tmp_path / "blob.bin"), (f"{server.url}/nope.png", tmp_path / "nope.png")]
    with pytest.raises(DownloadError, match=r"nope\.png.*HTTP 404"):
        fetch_files(jobs, **FAST)
    assert not (tmp_path / "nope.png").exists()


def test_progress_bar_can_be_shown(server, dest):
    fetch_file(f"{server.url}/blob.bin", dest, backoff=0, progress=True)
    assert dest.is_file()
