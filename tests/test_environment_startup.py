"""helpers.environment: TensorFlow's C++ start-up lines stay out of the notebooks (issue 15), real errors do not.

TensorFlow 2.21 writes them to file descriptor 2 while it is imported, before absl logging
starts (so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them); ``setup()`` imports it with fd 2
captured and replays every other line.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

# What `python -c "import tensorflow"` printed here (TF 2.21, CPU), twice over.
NOISE = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1796153974.933650   10491 port.cc:153] oneDNN custom operations are on. You may see slightly "
    b"different numerical results due to floating-point round-off errors from different computation orders. To "
    b"turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
    b"I0000 00:00:1796154259.441055   18647 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    b"available CPU instructions in performance-critical operations.\n"
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
    b"appropriate compiler flags.\n"
)
NOISE_MARKS = ("absl::InitializeLog", "oneDNN custom operations", "TensorFlow binary is optimized",
               "To enable the following instructions")


def python(code: str, *path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, path), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_start_up_lines_are_dropped_and_every_other_line_is_replayed(tmp_path):
    (tmp_path / "noisy.py").write_text(
        f"import os, sys\nos.write(2, {NOISE!r})\nos.write(2, b'E0000 a real error from C++\\n')\n"
        f"print('a Python warning', file=sys.stderr)\nos.write(2, {NOISE!r})\nVALUE = 42\n"
    )
    result = python("import os, sys\nfrom helpers import environment\nenvironment.import_tensorflow_quietly('noisy')\n"
                    "print(sys.modules['noisy'].VALUE)\nos.write(2, b'fd 2 is back\\n')", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"
    assert result.stderr == "E0000 a real error from C++\na Python warning\nfd 2 is back\n"


def test_a_failing_import_shows_its_error_and_gives_fd_2_back(tmp_path):
    (tmp_path / "broken.py").write_text(f"import os\nos.write(2, {NOISE!r} + b'E0000 cannot load libcuda\\n')\n"
                                        "raise ImportError('no such library')\n")
    result = python("import os\nfrom helpers import environment\ntry:\n    environment.import_tensorflow_quietly('broken')\n"
                    "except ImportError as error:\n    print(error)\nos.write(2, b'fd 2 is back\\n')", tmp_path)
    assert result.stdout == "no such library\n"
    assert result.stderr == "E0000 cannot load libcuda\nfd 2 is back\n"


@pytest.mark.tensorflow
def test_setup_imports_the_real_tensorflow_without_its_start_up_lines(tmp_path):
    env_free = "import os\nos.environ.pop('TF_CPP_MIN_LOG_LEVEL', None)\n"  # as on Colab: nothing set beforehand
    result = python(env_free + f"os.environ['COURSE_DATA_DIR'] = {str(tmp_path)!r}\nimport helpers\n"
                    "helpers.setup(verbose=False)\nimport tensorflow\nprint(tensorflow.__version__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()  # the version: TensorFlow really was imported
    assert not [mark for mark in NOISE_MARKS if mark in result.stderr], result.stderr


@pytest.mark.tensorflow
def test_the_predict_and_report_commands_print_no_start_up_lines(course_dirs, shared_data):
    """``python -m helpers predict`` (and ``report``, the same entry) loads a Keras model: no TensorFlow start-up lines."""
    from tiny_models import save_tiny_cnn

    folder = save_tiny_cnn()
    image = next((shared_data / "kermany-mini").rglob("*.jp*g"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "0"}
    result = subprocess.run([sys.executable, "-m", "helpers", "predict", "--model", str(folder), str(image)], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and '"probability"' in result.stdout, result.stderr
    assert not [mark for mark in NOISE_MARKS if mark in result.stderr], result.stderr
