"""``synthetic`` and ``synthetic-ct``: cartoon images generated offline (:mod:`helpers.data.synthetic`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from helpers.data.registry import MODALITIES, Prepared, Source, register
from helpers.data.tasks import DEFAULT_TASK, get_task
from helpers.files import atomic_write


def prepare_synthetic(
    data_dir: Path, *, modality: str = "xray", n_patients: int = 160, size: int = 192, marker: bool = False,
    seed: int = 0, task: str = DEFAULT_TASK, **options,
) -> Prepared:
    """Generate (once) the synthetic dataset for these options; a finished folder is reused.

    A ``task`` with a pneumonia class generates its classes in equal shares (PNEUMONIA: a lobar consolidation).
    """
    from helpers.data import synthetic  # the generator (numpy, PIL), imported when first needed

    settings = dict(modality=modality, n_patients=n_patients, size=size, marker=marker, seed=seed, **options)
    if task != DEFAULT_TASK:
        settings["class_shares"] = {label: 1.0 for label in get_task(task).classes}
    root = data_dir / "synthetic" / f"{modality}-{synthetic.options_key(**settings)}"
    manifest = root / "rows.csv"
    if not manifest.exists():
        rows = synthetic.generate(root, **settings)
        with atomic_write(manifest, "w", newline="") as file:
            rows.to_csv(file, index=False)
    rows = pd.read_csv(manifest, dtype={"patient_id": str})
    note = "SYNTHETIC data: generated cartoons of chest images, not real patients"
    if marker:
        note += f"; {int(rows['marker'].sum())} images carry the '{synthetic.MARKER_TEXT}' source marker"
    return Prepared(root, rows, [note])


for _name, _modality in (("synthetic", "xray"), ("synthetic-ct", "ct")):
    register(Source(
        _name, _modality, f"Synthetic {MODALITIES[_modality]} images generated offline (helpers.data.synthetic)",
        license="public domain (generated)", size="generated on the fly; a few MB", homepage="",
        prepare=partial(prepare_synthetic, modality=_modality), synthetic=True,
    ))
