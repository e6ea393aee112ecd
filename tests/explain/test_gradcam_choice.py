"""helpers.explain.examples: which run notebook 05's Grad-CAM explains (GRADCAM_MODEL), and the grid sentence it prints
from the chosen layer's output shape."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.explain.examples import gradcam_run, grid_sentence
from helpers.runs import Run


def run(folder, model: str, val_auc, *, kind: str = "keras") -> Run:
    """A run folder holding the files that make its kind (their content is never read here)."""
    path = folder / model
    path.mkdir()
    for name in (["model.keras"] if kind == "keras" else ["features.json", "model.ubj"]):
        (path / name).write_text("")
    return Run(dataset="synthetic", model=model, path=path, metrics={"val": {"auc": val_auc}},
               predictions=pd.DataFrame())


@pytest.fixture
def runs(tmp_path):
    return [run(tmp_path, "cnn", 0.80), run(tmp_path, "densenet121", 0.85), run(tmp_path, "vgg16", 0.90),
            run(tmp_path, "vgg16-xgboost", 0.99, kind="hybrid"), run(tmp_path, "resnet50", None)]


def test_best_is_the_best_validation_auc_among_keras_models(runs):
    assert gradcam_run(runs).model == "vgg16"  # not the hybrid (0.99, no gradient), not the first or the alphabetical
    assert gradcam_run(runs[:2]).model == "densenet121"


def test_a_named_model_is_chosen_and_an_unknown_name_lists_the_choices(runs):
    assert gradcam_run(runs, "cnn").model == "cnn"
    with pytest.raises(ValueError, match=r"'vgg16-xgboost': no saved Keras model .* \['cnn', 'densenet121', 'resnet50'"):
        gradcam_run(runs, "vgg16-xgboost")


def test_no_keras_model_says_what_to_run(runs):
    with pytest.raises(ValueError, match="notebook 02 or 03"):
        gradcam_run(runs[3:4])


def test_the_grid_sentence_of_vgg16():
    pytest.importorskip("tensorflow")
    from helpers.models import build_transfer

    model, _ = build_transfer("vgg16", size=64, weights=None)
    assert grid_sentence(model) == ("the last convolutional layer of vgg16 is block5_conv3 with a 4x4 grid: "
                                    "each cell covers 16x16 pixels of the 64px input")


@pytest.mark.parametrize("size", [32, 34])
def test_the_grid_sentence_follows_the_layer_shape(size):
    pytest.importorskip("tensorflow")
    from helpers.models import build_cnn

    model = build_cnn(size, filters=(8, 16), augment=False)
    height = model.get_layer("last_conv").output.shape[1]
    sentence = grid_sentence(model, name="cnn")
    assert sentence.startswith(f"the last convolutional layer of cnn is last_conv with a {height}x{height} grid")
    assert sentence.endswith(f"{size // height}x{size // height} pixels of the {size}px input" if size % height == 0
                             else f"about {size / height:.1f}x{size / height:.1f} pixels of the {size}px input")
