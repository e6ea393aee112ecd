"""``make demo``: serve notebook 06 as a standalone web page with Voilà, on 127.0.0.1.

    python -m helpers.app.serve [--model outputs/<dataset>/<model>] [--port 8866]

The server is set up for the upload app:

- its websocket accepts messages up to :data:`WEBSOCKET_LIMIT` (Jupyter's
  default, 10 MiB, closes the connection on a larger upload and the app then
  ignores everything after), well above the app's own limit
  (:data:`helpers.app.demo.MAX_BYTES`), so a too-large file gets the app's message;
- kernels idle for :data:`CULL_IDLE_SECONDS` with no page connected are shut
  down (each holds TensorFlow, several hundred MB), besides Voilà's own shutdown
  when a tab closes;
- ``--model`` preselects a run folder (``$COURSE_DEMO_MODEL`` for the kernel);
  without it the app preselects the best trained model.

:func:`voila_command` and :data:`SERVER_SETTINGS` are what the browser tests
start too, and what a JupyterLab server needs for the same uploads
(``jupyter lab --ServerApp.tornado_settings=...``, see :func:`lab_command`).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers.app.demo import MODEL_VARIABLE
from helpers.paths import project_root

WEBSOCKET_LIMIT = 128 * 2**20  # bytes in one websocket message: several files of up to MAX_BYTES in one upload
CULL_IDLE_SECONDS = 120
SERVER_SETTINGS = f"{{'websocket_max_message_size': {WEBSOCKET_LIMIT}}}"
NOTEBOOK = Path("notebooks") / "06_upload_demo.ipynb"



def culling(seconds: int = CULL_IDLE_SECONDS) -> list[str]:
    """Shut down kernels idle for ``seconds`` with no page connected (checked every ``seconds``, at most 20 s)."""
    return [f"--MappingKernelManager.cull_idle_timeout={seconds}",
            f"--MappingKernelManager.cull_interval={min(20, seconds)}"]


def voila_command(port: int, notebook: Path | None = None, *, cull_seconds: int = CULL_IDLE_SECONDS) -> list[str]:
    """The Voilà command line serving ``notebook`` (default: notebook 06) on 127.0.0.1:``port``."""
    notebook = notebook or project_root() / NOTEBOOK
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
            "--Voila.port_retries=0", f"--Voila.tornado_settings={SERVER_SETTINGS}",
            "--VoilaConfiguration.progressive_rendering=True", *culling(cull_seconds)]  # outputs show as cells run


def lab_command(port: int, root_dir: Path) -> list[str]:
    """A JupyterLab server on 127.0.0.1:``port`` for ``root_dir``, no token, uploads as large as Voilà's."""
    return [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={port}",
            "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
            f"--ServerApp.root_dir={root_dir}", f"--ServerApp.tornado_settings={SERVER_SETTINGS}",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", *culling(),
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.app.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a run folder to preselect, e.g. outputs/synthetic/vgg16-xgboost")
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.model:
        folder = Path(args.model).expanduser().resolve()
        if not folder.is_dir():
            print(f"error: {folder}: no such model folder (see `ls outputs/*/`)", file=sys.stderr)
            return 2
        env[MODEL_VARIABLE] = str(folder)
    port = args.port or free_port()
    print(f"The upload demo: http://127.0.0.1:{port}/  (port {port}; Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(voila_command(port), env=env)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
