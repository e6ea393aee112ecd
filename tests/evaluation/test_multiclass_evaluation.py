"""Three-class evaluation against a tiny table computed by hand; intervals resample patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.evaluation import choose_threshold
from helpers.evaluation.multiclass import (
    confusion,
    covid_operating_point,
    macro_auc,
    majority_baseline,
    per_class_with_ci,
    predictions_table,
)

CLASSES = ("NORMAL", "PNEUMONIA", "COVID")
# Six patients, one image each. Predicted (the most probable class): NORMAL, PNEUMONIA, PNEUMONIA, PNEUMONIA,
# COVID, NORMAL. By hand: confusion rows N [1 1 0], P [0 2 0], C [1 0 1]; sensitivity N 1/2, P 2/2, C 1/2;
# PPV N 1/2 (column N: 1 + 1), P 2/3, C 1/1. One-vs-rest AUC: N 7/8 (0.3 loses to 0.5), P 8/8, C 8/8;
# macro (0.875 + 1 + 1) / 3.
TRUE = ["NORMAL", "NORMAL", "PNEUMONIA", "PNEUMONIA", "COVID", "COVID"]
PROB = [[.7, .2, .1], [.3, .5, .2], [.1, .8, .1], [.2, .6, .2], [.1, .2, .7], [.5, .1, .4]]


def tiny(copies: int = 1, images_per_patient: int = 1) -> pd.DataFrame:
    """The hand table ``copies`` times over (new patients each time), each image ``images_per_patient`` times."""
    true = np.repeat(TRUE * copies, images_per_patient)
    prob = np.repeat(np.tile(PROB, (copies, 1)), images_per_patient, axis=0)
    patients = np.repeat(np.arange(6 * copies), images_per_patient).astype(str)
    return predictions_table(true, prob, CLASSES, patients)


def test_confusion_matrix_sensitivity_ppv_and_macro_auc_by_hand():
    assert confusion(tiny(), CLASSES).to_numpy().tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    table = per_class_with_ci(tiny(), CLASSES, n_boot=200)
    assert table["sensitivity"].tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert table["ppv"].tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    assert table["n"].tolist() == [2, 2, 2]
    assert macro_auc(tiny(), CLASSES) == pytest.approx((0.875 + 1 + 1) / 3)
    assert table.attrs["macro_auc"][0] == pytest.approx((0.875 + 1 + 1) / 3)


def test_class_indices_give_the_same_table_as_names():
    by_index = predictions_table([CLASSES.index(label) for label in TRUE], PROB, CLASSES)
    pd.testing.assert_frame_equal(by_index, tiny())


def test_intervals_contain_the_estimate_and_narrow_with_more_patients():
    small, large = (per_class_with_ci(tiny(copies), CLASSES, n_boot=500, seed=1) for copies in (3, 30))
    for table in (small, large):
        for name in ("sensitivity", "ppv"):
            assert (table[f"{name}_low"] <= table[name]).all() and (table[name] <= table[f"{name}_high"]).all()
        low, high = table.attrs["macro_auc"][1:]
        assert low <= table.attrs["macro_auc"][0] <= high
    width = {name: (t["sensitivity_high"] - t["sensitivity_low"]).to_numpy() for name, t in (("s", small), ("l", large))}
    # PNEUMONIA's sensitivity is 1 in every resample (width 0 both times); the other classes narrow.
    assert (width["l"][[0, 2]] < width["s"][[0, 2]] / 2).all()


def test_images_of_one_patient_are_resampled_together():
    once, twice = tiny(3), tiny(3, images_per_patient=2)
    by_patient = per_class_with_ci(twice, CLASSES, n_boot=300)
    assert by_patient["n"].tolist() == [12, 12, 12]
    pd.testing.assert_frame_equal(per_class_with_ci(once, CLASSES, n_boot=300).drop(columns="n"),
                                  by_patient.drop(columns="n"))  # a copied image is no new evidence
    by_image = per_class_with_ci(twice, CLASSES, n_boot=300, group=None)
    width = {name: (table["ppv_high"] - table["ppv_low"]).sum() for name, table in (("image", by_image),
                                                                                    ("patient", by_patient))}
    assert width["image"] < width["patient"]  # resampling images treats the copies as independent: too narrow


def test_covid_operating_point_takes_its_threshold_from_validation():
    val, test = tiny(2), tiny(2)
    val["prob_COVID"] = np.tile([.1, .2, .3, .35, .6, .5], 2)  # COVID's validation scores, other columns kept
    point = covid_operating_point(val, test, n_boot=200)
    expected = choose_threshold(val["y_true"] == "COVID", val["prob_COVID"])
    assert point.attrs["threshold"] == expected == 0.5
    # On test, COVID scores .7 and .4 against the others' .1 .2 .1 .2: at 0.5 half the COVID images are found.
    assert point.loc["sensitivity", "estimate"] == 0.5 and point.loc["specificity", "estimate"] == 1.0


def test_majority_baseline_for_three_classes():
    baseline = majority_baseline(["PNEUMONIA"] * 5 + ["COVID"] * 3 + ["NORMAL"] * 2, TRUE, CLASSES)
    assert baseline["majority_class"] == "PNEUMONIA"
    assert baseline["accuracy"] == pytest.approx(2 / 6)
    assert baseline["sensitivity"] == {"NORMAL": 0.0, "PNEUMONIA": 1.0, "COVID": 0.0}
    assert baseline["ppv"]["PNEUMONIA"] == pytest.approx(2 / 6) and np.isnan(baseline["ppv"]["COVID"])
    assert majority_baseline(["COVID", "NORMAL"], TRUE, CLASSES)["majority_class"] == "NORMAL"  # a tie
