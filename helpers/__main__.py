"""The course's command line: ``python -m helpers COMMAND ...``.

- ``run-all``  execute the notebooks with papermill (see ``helpers.app.runner``)
- ``predict``  predict images with a trained model (any task), one JSON line each
- ``report``   build ``outputs/report.md`` and ``outputs/report.html``
- ``prepare``  download and split a dataset ahead of time
"""

from __future__ import annotations

import argparse
import sys


def prepare(argv: list[str]) -> int:
    from helpers.data.dataset import describe, load_dataset

    parser = argparse.ArgumentParser(prog="python -m helpers prepare")
    parser.add_argument("dataset")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--max-per-class", type=int)
    args = parser.parse_args(argv)
    print(describe(load_dataset(args.dataset, strict=args.strict, max_per_class=args.max_per_class, verbose=False)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"run-all": "helpers.app.runner", "predict": "helpers.app.predict", "report": "helpers.app.report"}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*commands, "prepare"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "prepare":
        return prepare(argv[1:])
    import importlib

    if argv[0] in ("predict", "report"):  # both load Keras models: without TensorFlow's C++ start-up lines
        from helpers.environment import import_tensorflow_quietly

        import_tensorflow_quietly()
    return importlib.import_module(commands[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
