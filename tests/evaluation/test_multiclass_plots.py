"""The k x k confusion figure draws the counts of helpers.evaluation.multiclass.confusion, rows true."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers import plots  # noqa: E402
from helpers.evaluation.multiclass import confusion, predictions_table  # noqa: E402

CLASSES = ("NORMAL", "PNEUMONIA", "COVID")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_each_cell_shows_its_count_and_row_share():
    # true NORMAL x2 (one called PNEUMONIA), PNEUMONIA x1 (called COVID), COVID x3 (all right)
    true = ["NORMAL", "NORMAL", "PNEUMONIA", "COVID", "COVID", "COVID"]
    prob = [[.8, .1, .1], [.2, .7, .1], [.1, .2, .7], [0, .1, .9], [.1, 0, .9], [.2, .2, .6]]
    table = confusion(predictions_table(true, prob, CLASSES), CLASSES)
    figure = plots.plot_multiclass_confusion({"cnn": table}, synthetic=True)
    (ax,) = figure.axes
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells[(0, 0)] == "1\n(50%)" and cells[(0, 1)] == "1\n(50%)" and cells[(1, 2)] == "1\n(100%)"
    assert cells[(2, 2)] == "3\n(100%)" and cells[(2, 0)] == "0\n(0%)"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASSES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert "SYNTHETIC DATA" in figure._suptitle.get_text()


def test_one_panel_per_model_and_a_clear_message_without_any():
    table = confusion(predictions_table(["COVID", "NORMAL", "PNEUMONIA"], [[0, 0, 1], [1, 0, 0], [0, 1, 0]],
                                        CLASSES), CLASSES)
    assert len(plots.plot_multiclass_confusion({"a": table, "b": table}).axes) == 2
    with pytest.raises(ValueError, match="no confusion matrix"):
        plots.plot_multiclass_confusion({})
