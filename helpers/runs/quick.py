""":func:`quick_cnn`, the one "train a quick CNN unless there is one"."""

from __future__ import annotations

from pathlib import Path

from helpers.data.tasks import DEFAULT_TASK
from helpers.runs.artifacts import Run, RunError, run_name
from helpers.runs.reading import read_run
from helpers.runs.saving import output_root


def _check_reusable(run: Run, dataset, size: int) -> None:
    """RunError when an existing run cannot stand in for a quick CNN of ``dataset`` at ``size`` px."""
    problems = []
    if run.kind != "keras":
        problems.append("it holds no Keras model")
    if run.metrics.get("img_size") not in (None, size):
        problems.append(f"its model takes {run.metrics['img_size']}px images, these are {size}px")
    wanted = getattr(dataset, "test_fingerprint", None)
    if None not in (run.test_fingerprint, wanted) and run.test_fingerprint != wanted:
        problems.append("it was scored on another test split (the dataset changed: other options or cap)")
    if problems:
        raise RunError(f"{run.path} cannot be reused: {'; '.join(problems)}. "
                       "Delete that folder to train a new model there, or pass another name=")


def quick_cnn(
    dataset, image_set, *, output_dir: Path | None = None, name: str = "cnn", epochs: int = 4,
    batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 42, verbose: int | str = 0,
) -> Run:
    """The run ``<output_dir>/<dataset>/<run name>/`` if a usable one is there, else a small CNN trained and saved there.

    The CNN is trained for the dataset's task (a softmax over its classes when there are more than two).
    Nothing usable is ever overwritten: a run of another input size or test split raises
    :class:`RunError`. An unfinished or broken run is replaced. Training is ``build_cnn`` +
    :func:`helpers.models.train.fit` (selection on val only). One line says what happened.
    """
    task = getattr(dataset, "task", DEFAULT_TASK)
    folder = output_root(output_dir) / dataset.name / run_name(name, task)
    size = int(image_set.images.shape[1])
    if folder.is_dir():
        try:
            run = read_run(folder)
        except RunError as error:
            print(f"{error}\nTraining a new one there.")
        else:
            _check_reusable(run, dataset, size)
            print(f"Using the CNN already trained in {folder} (delete the folder to train it again).")
            return run
    from helpers.environment import seed_everything
    from helpers.models import build_cnn
    from helpers.models.train import evaluate_and_save, fit

    classes = tuple(getattr(dataset, "classes", ()))
    softmax = classes if len(classes) > 2 else None
    seed_everything(seed)
    model = build_cnn(size, seed=seed, classes=len(softmax) if softmax else 1)
    history = fit(model, image_set, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                  verbose=verbose, classes=softmax)
    evaluate_and_save(model, image_set, dataset, name=name, history=history, weights="scratch",
                      params={"epochs": epochs, "batch_size": batch_size, "quick": True}, output_dir=output_dir)
    print(f"Trained a quick {size}px CNN on {dataset.name} ({len(history.get('loss', []))} epochs, "
          f"{sum(history.get('seconds', [])):.0f} s); saved to {folder}.")
    run = read_run(folder)
    run._keras = model
    return run
