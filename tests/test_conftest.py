"""The suite's own machinery (tests/conftest.py): the network guard and the marks that ``make test-fast`` uses."""

from __future__ import annotations

import socket
import textwrap
import threading
import urllib.error
import urllib.request

import pytest
from conftest import REAL, NetworkBlocked, module_needs


@pytest.fixture
def real_connects(monkeypatch):
    """The addresses the guard handed on to the real ``connect``: what actually reached the kernel."""
    calls = []
    connect = REAL["connect"]
    monkeypatch.setitem(REAL, "connect", lambda sock, address: (calls.append(address), connect(sock, address))[1])
    return calls


@pytest.mark.parametrize("address", [("192.0.2.1", 9), ("10.255.255.1", 9), ("8.8.8.8", 53)])
def test_a_connection_outside_loopback_is_refused_before_anything_is_sent(real_connects, address):
    with socket.socket() as sock, pytest.raises(NetworkBlocked, match=rf"{address[0]}:{address[1]} is not loopback"):
        sock.connect(address)
    with socket.socket() as sock, pytest.raises(NetworkBlocked):
        sock.connect_ex(address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(NetworkBlocked):
        sock.sendto(b"x", address)
    assert real_connects == []


def test_names_are_refused_without_a_lookup_and_urllib_reports_the_host():
    with pytest.raises(NetworkBlocked, match="looking up 'example.com'"):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(urllib.error.URLError, match="network access blocked in the tests: looking up 'example.com'"):
        urllib.request.urlopen("https://example.com/", timeout=1)
    with socket.socket() as sock, pytest.raises(NetworkBlocked, match="example.com:80"):
        sock.connect(("example.com", 80))  # a name given straight to connect is not resolved either


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "localhost"),
                                              (socket.AF_INET6, "::1")])
def test_loopback_connections_go_through(real_connects, family, host):
    try:
        server = socket.socket(family)
        server.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} on this machine")
    with server:
        server.listen(1)
        port = server.getsockname()[1]
        accepted = threading.Thread(target=lambda: server.accept()[0].sendall(b"hello"))
        accepted.start()
        with socket.create_connection((host, port), timeout=5) as client:
            assert client.recv(5) == b"hello"
        accepted.join(5)
    assert [address[1] for address in real_connects] == [port]  # one real connection, to the listener


def test_unix_sockets_go_through(tmp_path):
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        server.bind(path)
        server.listen(1)
        client.connect(path)
        server.accept()[0].close()


def test_marks_come_from_the_imports_of_the_module_and_of_each_function(tmp_path):
    source = tmp_path / "test_example.py"
    source.write_text(textwrap.dedent('''
        import numpy as np
        from helpers.data import synthetic
        keras = pytest.importorskip("keras")

        def test_plain():
            pass
    '''))
    assert module_needs(source) == ({"tensorflow"}, {})
    source = tmp_path / "test_nested.py"
    source.write_text(textwrap.dedent('''
        from helpers import evaluation

        @pytest.fixture
        def model():
            from helpers.models import build_cnn
            return build_cnn(32)

        def test_uses_explain():
            import helpers.explain.shortcut

        def test_sets_up_a_notebook():
            from helpers import environment
            environment.setup()

        def test_no_tensorflow():
            import helpers.modelsx  # a name that only starts like one
    '''))
    assert module_needs(source) == (set(), {"model": {"tensorflow"}, "test_uses_explain": {"tensorflow"},
                                             "test_sets_up_a_notebook": {"tensorflow"}})
    source = tmp_path / "test_runs_notebooks.py"
    source.write_text("from helpers.app import runner\n\ndef smoke():\n    return runner.run_all('smoke')\n")
    assert module_needs(source)[0] == {"notebooks"}  # a module that runs notebooks anywhere is all notebooks
