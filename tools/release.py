"""``make release VERSION=x.y.z``: one commit and one local tag that the badges and the setup cell name.

Sets ``helpers.__version__`` (pyproject.toml reads it), rebuilds the notebooks and the README's
badges, runs the checks (ruff, the notebooks are built, the ref tests), commits and tags
``vx.y.z``. It never pushes: ``git push origin HEAD vx.y.z`` publishes the release, after which
the badges open it. On any failure the working tree is restored and nothing is tagged.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INIT = ROOT / "helpers" / "__init__.py"
VERSION_LINE = re.compile(r'^__version__ = "[^"]*"$', re.M)
CHECKS = [
    ["-m", "ruff", "check", "helpers", "tests", "tools", "benchmarks"],
    ["tools/build_notebooks.py", "--check"],
    ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "tests/notebooks/test_release.py", "-k", "not make_release"],
]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def fail(message: str) -> int:
    print(f"make release: {message}", file=sys.stderr)
    return 1


def release(version: str) -> int:
    tag = f"v{version}"
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        return fail(f"VERSION={version!r}: give it as x.y.z, e.g. make release VERSION=0.2.0")
    if git("status", "--porcelain", "--untracked-files=no"):
        return fail("the working tree has uncommitted changes: commit or stash them first")
    if git("tag", "--list", tag):
        return fail(f"the tag {tag} exists already: choose a higher VERSION")
    INIT.write_text(VERSION_LINE.sub(f'__version__ = "{version}"', INIT.read_text(), count=1))
    steps = [["tools/build_notebooks.py"], *CHECKS]
    for step in steps:
        if subprocess.run([sys.executable, *step], cwd=ROOT).returncode:
            git("checkout", "--", ".")
            return fail(f"`python {' '.join(step)}` failed: the version change is undone, nothing is tagged")
    git("commit", "--quiet", "--all", "--message", f"Release {tag}")
    git("tag", "--annotate", tag, "--message", f"Release {tag}")
    print(f"tagged {tag} at {git('rev-parse', '--short', 'HEAD')} (local only): git push origin HEAD {tag}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: make release VERSION=x.y.z")
    raise SystemExit(release(sys.argv[1]))
