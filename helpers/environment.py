"""``setup()``: the first call of every notebook. Versions, device, strategy, seeds, widgets, Drive."""

from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

IS_COLAB = "google.colab" in sys.modules
DRIVE = Path("/content/drive")  # where Colab mounts Google Drive
COURSE_FOLDER = "MyDrive/covid-course"  # the learner's persistent folder, inside the mounted Drive
_STRATEGY = None  # set by setup(); models are built and compiled in its scope


@dataclass
class Setup:
    """What ``setup()`` found; notebooks keep it as ``ENV``."""

    strategy: object
    gpus: list[str]
    mixed_precision: bool
    seed: int
    versions: dict = field(default_factory=dict)
    persistent: Path | None = None  # the Drive folder holding outputs and data, when PERSIST is on

    @property
    def gpu(self) -> bool:
        return bool(self.gpus)


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow_quietly(module: str = "tensorflow") -> None:
    """Import TensorFlow without its C++ start-up lines, the first thing a learner would read otherwise.

    TensorFlow 2.21 writes them to file descriptor 2 before absl logging starts, whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says ("All log messages before absl::InitializeLog() ...", "oneDNN
    custom operations are on ...", the CPU-instructions note; on Colab's GPUs the duplicate
    cuDNN/cuFFT/cuBLAS factory registrations), and Jupyter shows fd 2 in the cell. So fd 2 goes to
    a temporary file during the import, and every other line written there is replayed on
    ``sys.stderr``: real errors and warnings stay visible. Nothing is turned off (oneDNN stays on).
    """
    import importlib
    import re
    import tempfile

    if module in sys.modules:
        return
    noise = re.compile(r"absl::InitializeLog\(\) is called are written to STDERR|oneDNN custom operations are on"
                       r"|TensorFlow binary is optimized to use available CPU instructions"
                       r"|^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler"
                       r"|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module(module)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not noise.search(line)))
            sys.stderr.flush()


def _point_caches_into_project() -> None:
    """Keras downloads (ImageNet weights) go under the course's data cache, not the home folder."""
    from helpers.paths import data_dir

    os.environ.setdefault("KERAS_HOME", str(data_dir() / "keras"))


def persist_in_drive(mount_point: Path = DRIVE) -> Path | None:
    """In Colab: mount Google Drive and keep outputs and datasets in ``MyDrive/covid-course/``.

    Sets ``COURSE_OUTPUT_DIR`` and ``COURSE_DATA_DIR`` there, so that every notebook of the course,
    each in its own VM, reuses the models and downloads of the others. Outside Colab: nothing, None.
    """
    if not IS_COLAB:
        return None
    from google.colab import drive  # type: ignore[import-not-found]

    if not (mount_point / "MyDrive").is_dir():
        drive.mount(str(mount_point))
    folder = mount_point / COURSE_FOLDER
    os.environ["COURSE_OUTPUT_DIR"] = str(folder / "outputs")
    os.environ["COURSE_DATA_DIR"] = str(folder / "data")
    os.environ["KERAS_HOME"] = str(folder / "data" / "keras")  # ImageNet weights too, also when set before
    return folder


def enable_widgets(ipywidgets_version: str | None = None) -> bool:
    """In Colab, ipywidgets 8 needs Colab's custom widget manager (its own front end renders 7.x)."""
    import importlib.metadata as md

    if not IS_COLAB:
        return False
    try:
        major = int((ipywidgets_version or md.version("ipywidgets")).split(".")[0])
    except md.PackageNotFoundError:
        return False
    if major < 8:
        return False
    from google.colab import output  # type: ignore[import-not-found]

    output.enable_custom_widget_manager()
    return True


def versions() -> dict:
    """Versions of everything that matters for reproducing a run."""
    import importlib.metadata as md

    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("covid-course", "tensorflow", "tensorflow-cpu", "keras", "xgboost", "xgboost-cpu", "numpy",
                 "pandas", "scikit-learn", "matplotlib", "pillow", "ipywidgets"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def seed_everything(seed: int = 42) -> None:
    """Python, NumPy and TensorFlow/Keras random generators from one seed."""
    import keras
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


def _strategy():
    """TPU if present, all GPUs if several, else the default (one GPU or the CPU)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME"):
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver), []
    names = [gpu.name for gpu in gpus]
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), names
    return tf.distribute.get_strategy(), names


def strategy_scope():
    """The scope of the strategy ``setup()`` chose (the default strategy before ``setup()``)."""
    import tensorflow as tf

    return (_STRATEGY or tf.distribute.get_strategy()).scope()


def setup(seed: int = 42, *, persist: bool = False, mixed_precision: bool | None = None,
          verbose: bool = True) -> Setup:
    """Prepare a notebook: Drive (``persist``, Colab only), quiet logs, caches, strategy, mixed precision, seeds.

    ``mixed_precision=None`` turns float16 compute on exactly when a GPU is present
    (models keep a float32 output layer).
    """
    persistent = persist_in_drive() if persist else None
    _quiet_tensorflow()
    import_tensorflow_quietly()
    _point_caches_into_project()
    import keras

    global _STRATEGY
    strategy, gpus = _strategy()
    _STRATEGY = strategy
    use_mixed = bool(gpus) if mixed_precision is None else mixed_precision
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    seed_everything(seed)
    enable_widgets()
    found = Setup(strategy=strategy, gpus=gpus, mixed_precision=use_mixed, seed=seed, versions=versions(),
                  persistent=persistent)
    if verbose:
        print(describe(found))
    return found


def describe(found: Setup) -> str:
    v = found.versions
    device = ", ".join(found.gpus) if found.gpus else f"CPU only ({os.cpu_count()} cores)"
    lines = [
        f"python {v['python']} | tensorflow {v.get('tensorflow') or v.get('tensorflow-cpu')} | keras {v.get('keras')}"
        f" | xgboost {v.get('xgboost') or v.get('xgboost-cpu')} | numpy {v.get('numpy')}",
        f"device: {device} | strategy: {type(found.strategy).__name__} ({found.strategy.num_replicas_in_sync} "
        f"replica) | mixed precision: {'on' if found.mixed_precision else 'off'} | seed: {found.seed}"
        f" | Colab: {'yes' if IS_COLAB else 'no'}",
    ]
    if not found.gpus:
        lines.append("No GPU: the SMOKE and cpu settings keep runs short. In Colab: Runtime > Change runtime type > GPU.")
    if found.persistent:
        lines.append(f"Persistent folder: {found.persistent} (outputs and datasets survive the VM)")
    elif IS_COLAB:
        lines.append("Outputs and datasets are lost with this VM: PERSIST = True in the setup cell keeps them in Google "
                     "Drive, so that later notebooks reuse them.")
    return "\n".join(lines)
