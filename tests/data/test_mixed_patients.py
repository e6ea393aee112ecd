"""The note on patients with images of several classes names the classes they have, for every task."""

from __future__ import annotations

import pandas as pd

from helpers.data.registry import mixed_patient_note


def rows(labels: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(patient, label) for patient, values in labels.items() for label in values],
                        columns=["patient_id", "label"])


def test_every_combination_of_classes_is_named_and_counted():
    (note,) = mixed_patient_note("src", rows({
        "a": ["NORMAL", "COVID"], "b": ["COVID", "NORMAL", "COVID"], "c": ["PNEUMONIA", "COVID"],
        "d": ["PNEUMONIA", "NORMAL", "COVID"], "e": ["COVID"], "f": ["PNEUMONIA", "PNEUMONIA"]}))
    assert note.startswith("src: 2 patients have both COVID and NORMAL images")
    assert "1 patients have both COVID and PNEUMONIA images" in note
    assert "1 patients have all of COVID, NORMAL and PNEUMONIA images" in note
    assert "patient-level split" in note


def test_no_note_when_every_patient_has_one_class():
    assert mixed_patient_note("src", rows({"a": ["PNEUMONIA", "PNEUMONIA"], "b": ["COVID"]})) == []
