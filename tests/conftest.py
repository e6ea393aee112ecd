"""Shared test machinery: sample data, isolated folders, the local ieee8023 server, reference metrics,
a network guard for the whole suite, and the ``tensorflow`` / ``notebooks`` markers behind ``make test-fast``.
(Image and DICOM files made in memory live in ``tests/image_files.py``.)

- Network: every socket connection and name lookup outside loopback (127.0.0.0/8, ::1, AF_UNIX) raises
  :class:`NetworkBlocked` before anything is sent, so no test can reach the internet by accident.
- Markers: a test module that imports TensorFlow (``keras``, ``tensorflow``, ``helpers.models``,
  ``helpers.explain``, or calls ``setup()``) is marked ``tensorflow``; one that runs notebooks (imports
  ``papermill`` or calls ``run_all``/``execute_notebook``) is marked ``notebooks`` and ``slow``. An import inside a test function or
  fixture marks only that test or the tests using that fixture. Read from the source, so the marks
  stay right as tests change. ``pytest --fast`` (``make test-fast``) leaves all of them out, and
  refuses ``import tensorflow``/``keras`` outright: a test that needs TensorFlow without saying so
  fails with a message that says how to mark it.
"""

from __future__ import annotations

import ast
import importlib.abc
import ipaddress
import socket
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from http_server import FaultyServer

from helpers.data.sources import IEEE8023_COMMIT

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
IEEE_PREFIX = f"/ieee8023/covid-chestxray-dataset/{IEEE8023_COMMIT}"  # the path raw.githubusercontent.com uses


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of small real X-rays and CT slices; tests skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture
def course_dirs(tmp_path, monkeypatch):
    """Point COURSE_DATA_DIR and COURSE_OUTPUT_DIR at fresh temporary folders."""
    data, out = tmp_path / "data", tmp_path / "outputs"
    monkeypatch.setenv("COURSE_DATA_DIR", str(data))
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(out))
    return data, out


@pytest.fixture(scope="module")
def module_course_dirs(tmp_path_factory):
    """Like ``course_dirs``, for a whole test module, so that its datasets are prepared once."""
    data, out = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_DATA_DIR", str(data))
        patch.setenv("COURSE_OUTPUT_DIR", str(out))
        yield data, out


@pytest.fixture
def ieee_server(shared_data):
    """ieee8023-mini served on 127.0.0.1 under the path of the pinned commit, as GitHub serves the real one."""
    with FaultyServer(shared_data / "ieee8023-mini", prefix=IEEE_PREFIX) as server:
        yield server


# ------------------------------------------------------------------------------ reference metrics


def check_recorded_metrics(recorded: dict, y_true, prob, threshold: float) -> None:
    """``recorded`` (a split of a metrics.json) holds the metrics of these predictions, recomputed by
    scikit-learn alone: independent of ``helpers.evaluation``, which wrote them."""
    from sklearn import metrics as skm

    y, prob = np.asarray(y_true, int), np.asarray(prob, float)
    predicted = (prob >= threshold).astype(int)
    assert recorded["confusion_matrix"] == skm.confusion_matrix(y, predicted, labels=[0, 1]).tolist()
    assert recorded["auc"] == pytest.approx(skm.roc_auc_score(y, prob))
    assert recorded["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert recorded["sensitivity"] == pytest.approx(skm.recall_score(y, predicted))
    assert recorded["specificity"] == pytest.approx(skm.recall_score(y, predicted, pos_label=0))
    assert (recorded["n"], recorded["threshold"]) == (len(y), pytest.approx(threshold))


# ------------------------------------------------------------------------------ the network guard


class NetworkBlocked(OSError):
    """A test tried to reach a host outside loopback."""


LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
REAL = {"connect": socket.socket.connect, "connect_ex": socket.socket.connect_ex, "sendto": socket.socket.sendto,
        "getaddrinfo": socket.getaddrinfo}


def is_local(host) -> bool:
    """Loopback addresses and names (an AF_UNIX path or abstract name counts as local)."""
    if isinstance(host, bytes | bytearray) or host is None:
        return True
    host = str(host).split("%")[0].strip("[]")
    if host.lower() in LOCAL_NAMES or host == "":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name other than localhost: refused without looking it up
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def check_address(family, address) -> None:
    if family == getattr(socket, "AF_UNIX", None) or not isinstance(address, tuple):
        return
    if not is_local(address[0]):
        raise NetworkBlocked(f"network access blocked in the tests: {address[0]}:{address[1]} is not loopback "
                             "(serve the files locally, see tests/http_server.py)")


def _guarded_connect(self, address):
    check_address(self.family, address)
    return REAL["connect"](self, address)


def _guarded_connect_ex(self, address):
    check_address(self.family, address)
    return REAL["connect_ex"](self, address)


def _guarded_sendto(self, data, *args):
    check_address(self.family, args[-1])
    return REAL["sendto"](self, data, *args)


def _guarded_getaddrinfo(host, port, *args, **kwargs):
    if not is_local(host):
        raise NetworkBlocked(f"network access blocked in the tests: looking up {host!r} (port {port})")
    return REAL["getaddrinfo"](host, port, *args, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def no_internet():
    """For the whole session: connections and lookups outside loopback raise :class:`NetworkBlocked`.

    Kernels started by papermill are separate processes (the SMOKE profile runs them offline);
    their ZMQ sockets and the local HTTP servers are on loopback and unaffected.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _guarded_connect)
        patch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
        patch.setattr(socket.socket, "sendto", _guarded_sendto)
        patch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
        yield


# ------------------------------------------------------------------------------ markers and make test-fast

NEEDS = {"tensorflow": ("tensorflow", "keras", "helpers.models", "helpers.explain", "tiny_models"),  # tiny_models: tests' Keras models
         "notebooks": ("papermill",)}
WHOLE_MODULE = {"notebooks"}  # a module that runs notebooks anywhere is a notebooks module
# Calls that import TensorFlow or start kernels without an import statement in the test.
CALLS = {"setup": "tensorflow", "seed_everything": "tensorflow", "run_all": "papermill", "run_series": "papermill",
         "execute_notebook": "papermill"}


def _imported(node: ast.AST) -> list[str]:
    """Module names a statement imports (``importorskip("keras")`` included, and what a call in ``CALLS`` needs)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Call):
        called = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
        if called == "importorskip" and node.args and isinstance(node.args[0], ast.Constant):
            return [str(node.args[0].value)]
        return [CALLS[called]] if called in CALLS else []
    return []


def _needs(names: list[str]) -> set[str]:
    return {mark for mark, prefixes in NEEDS.items()
            for name in names for prefix in prefixes if name == prefix or name.startswith(prefix + ".")}


@cache
def module_needs(path: Path) -> tuple[frozenset, dict[str, frozenset]]:
    """What a test file needs: for the whole module, and per function (test or fixture) that imports inside."""
    tree = ast.parse(path.read_text(), str(path))
    per_function: dict[str, set[str]] = {}
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = [n for n in ast.walk(node) if n is not node]
            nested.update(id(n) for n in inner)
            per_function.setdefault(node.name, set()).update(_needs([m for n in inner for m in _imported(n)]))
    module = _needs([m for n in ast.walk(tree) if id(n) not in nested for m in _imported(n)])
    module |= {mark for marks in per_function.values() for mark in marks if mark in WHOLE_MODULE}
    return frozenset(module), {name: frozenset(marks) for name, marks in per_function.items() if marks}


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """``pytest --fast``: importing TensorFlow is an error that names the cure."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError(f"`pytest --fast` runs no TensorFlow, but this test imports {name!r}: import it (or "
                              "helpers.models / helpers.explain) in the test module, or mark the test "
                              "@pytest.mark.tensorflow")


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true",
                     help="only tests that need neither TensorFlow nor papermill (make test-fast)")


def pytest_configure(config):
    if config.getoption("--fast") and not any(isinstance(f, _NoTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTensorFlow())


def pytest_ignore_collect(collection_path, config):
    """``--fast``: a test file marked as a whole (TensorFlow at module level, or notebooks) is not even imported."""
    if config.getoption("--fast") and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return bool(module_needs(collection_path)[0]) or None
    return None


SERIES_FIXTURES = {"smoke", "smoke_tasks"}  # the SMOKE series (tests/notebooks/test_notebooks*.py)


def pytest_collection_modifyitems(config, items):
    """Mark what each test needs; ``--fast`` deselects those; the SMOKE series (the longest fixtures: ``smoke``,
    ``smoke_tasks``) first, so that with ``-n 2`` each starts at once on a worker and the other tests follow."""
    for item in items:
        module, per_function = module_needs(item.path)
        needs = set(module) | set(per_function.get(getattr(item, "originalname", item.name), ()))
        needs |= {mark for name in getattr(item, "fixturenames", ()) for mark in per_function.get(name, ())}
        if "smoke" in getattr(item, "fixturenames", ()):
            needs.add("smoke")  # the default task's SMOKE series: make test runs it, make test-colab does not
        for mark in sorted(needs | ({"slow"} if "notebooks" in needs else set())):
            item.add_marker(mark)
    if config.getoption("--fast"):
        needing = {item for item in items if any(item.get_closest_marker(mark) for mark in NEEDS)}
        config.hook.pytest_deselected(items=[item for item in items if item in needing])
        items[:] = [item for item in items if item not in needing]
    items.sort(key=lambda item: not SERIES_FIXTURES & set(getattr(item, "fixturenames", ())))
