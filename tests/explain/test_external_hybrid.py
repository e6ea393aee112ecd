"""External validation scores every kind of run: real tiny VGG16 + XGBoost / logistic hybrids (and a CNN) trained on
real X-rays from ../shared/data, scored on a COVID-only external set through the demo's prediction path, after the
external copy of a train image was dropped and counted."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("xgboost")
pytest.importorskip("tensorflow")

from test_external_overlap import OTHER_TWINS, TWIN_EXTERNAL, TWIN_SEEN  # noqa: E402

from helpers.data.dataset import Dataset  # noqa: E402
from helpers.explain import external  # noqa: E402
from helpers.explain.overlap import external_overlap  # noqa: E402
from helpers.images import load_images  # noqa: E402
from helpers.runs import read_external, read_runs  # noqa: E402

SIZE = 32
N_SEEN = 20  # 12 train, 4 val, 4 test
N_FRESH = 5


def dataset(name, root, paths, labels, splits) -> Dataset:
    manifest = pd.DataFrame({"path": paths, "label": labels, "patient_id": [f"{name}-{i}" for i in range(len(paths))],
                             "source": name, "modality": "xray", "view": "PA", "sex": None, "age": None,
                             "split": splits})
    return Dataset(name=name, root=root, manifest=manifest, modality="xray", synthetic=False)


@pytest.fixture(scope="module")
def trained(shared_data, module_course_dirs, tmp_path_factory):
    """Runs of ``seen`` (a CNN and both hybrids, saved as notebooks 02 and 04 save them) and a COVID-only external set:
    a resized JPEG copy of a train image, a copy of a test image and 5 images the models never saw."""
    from helpers.models import build_cnn, hybrid
    from helpers.models.train import evaluate_and_save

    meta = pd.read_csv(shared_data / "ieee8023-mini" / "metadata.csv")
    names = meta.loc[meta["modality"] == "X-ray", "filename"].drop_duplicates()
    names = [n for n in names if n not in OTHER_TWINS | {TWIN_SEEN, TWIN_EXTERNAL}]
    root = shared_data / "ieee8023-mini" / "images"
    splits = ["train"] * 12 + ["val"] * 4 + ["test"] * 4
    seen = dataset("seen", root, names[:N_SEEN], ["COVID", "NORMAL"] * (N_SEEN // 2), splits)  # labels: arbitrary

    image_set = load_images(seen, SIZE, progress=False)
    evaluate_and_save(build_cnn(SIZE, filters=(4, 8), augment=False), image_set, seen, name="cnn")
    features = hybrid.extract_features(seen, image_set, weights=None, pooling="avg")
    xgb, info = hybrid.train_xgboost(features, device="cpu", n_estimators=10, early_stopping_rounds=5, n_jobs=1)
    hybrid.save_hybrid("vgg16-xgboost", xgb, features, seen, info=info)
    logistic, info = hybrid.train_logistic(features, Cs=(0.1,), max_iter=200)
    hybrid.save_hybrid("vgg16-logistic", logistic, features, seen, info=info)

    folder = tmp_path_factory.mktemp("second-hospital")
    copied = Image.open(root / names[0]).convert("L")
    copied.resize((copied.width // 2, copied.height // 2)).save(folder / "copy-of-train.jpg", quality=70)
    shutil.copy(root / names[splits.index("test")], folder / "copy-of-test.jpeg")
    fresh = names[N_SEEN:N_SEEN + N_FRESH]
    for name in fresh:
        shutil.copy(root / name, folder / name)
    paths = ["copy-of-train.jpg", "copy-of-test.jpeg", *fresh]
    second = dataset("second", folder, paths, ["COVID"] * len(paths), ["test"] * len(paths))
    return seen, second, read_runs(dataset="seen")


def test_every_kind_of_run_is_scored_after_the_overlap_is_dropped(trained, module_course_dirs):
    seen, second, runs = trained
    assert sorted(run.kind for run in runs) == ["hybrid", "hybrid", "keras"]
    records = {r["model"]: r for r in external.validate_runs_externally(runs, second, n_boot=100, seen=seen)}
    assert sorted(records) == ["cnn", "vgg16-logistic", "vgg16-xgboost"]
    for record in records.values():
        assert record["near_duplicates_dropped"] == 1  # the resized copy of a train image; the test copy stays
        assert (record["n"], record["n_positive"], record["n_patients"]) == (1 + N_FRESH, 1 + N_FRESH, 1 + N_FRESH)
        assert record["auc"] is None and record["specificity"] is None and record["specificity_low"] is None
        assert "AUC and specificity are undefined" in record["note"]
        assert record["sensitivity_low"] <= record["sensitivity"] <= record["sensitivity_high"]
    summary = external.external_summary(list(records.values())).set_index("model")
    assert (summary["specificity (95% CI)"] == "undefined").all() and summary["external AUC"].isna().all()
    assert summary.loc["vgg16-xgboost", "sensitivity (95% CI)"].startswith(f"{records['vgg16-xgboost']['sensitivity']:.2f}")
    assert (summary["near-duplicates dropped"] == 1).all()
    written = {r["file"] for r in read_external(module_course_dirs[1])}
    assert written == {f"seen/external/{name}-on-second.json" for name in records}


def test_a_hybrid_is_scored_exactly_as_the_demo_scores_it(trained):
    """The record's sensitivity is the share of kept images the demo's model calls COVID at the run's threshold."""
    from helpers.app.predict import load_model

    seen, second, runs = trained
    kept = external_overlap(second, seen).kept
    image_set = load_images(second, SIZE, progress=False)
    images = image_set.images[image_set.manifest["path"].isin(kept["path"]).to_numpy()]
    for run in runs:
        demo = load_model(run.path)
        ours = external.covid_probability(external.load_run_model(run), images)
        covid = demo.probabilities(images)[:, -1]  # COVID is the last class
        np.testing.assert_allclose(ours, covid, rtol=0, atol=1e-5)
        if run.kind == "hybrid":
            record = external.external_validation(run, second, image_set, n_boot=50, write=False,
                                                  overlap=external_overlap(second, seen))
            assert record["model"] == run.name and record["threshold"] == demo.threshold
            assert record["sensitivity"] == np.mean(covid >= demo.threshold)


def test_a_hybrid_at_the_wrong_size_is_refused(trained):
    seen, second, runs = trained
    run = next(run for run in runs if run.kind == "hybrid")
    with pytest.raises(ValueError, match=f"takes {SIZE}px images, these are 48px"):
        external.external_validation(run, second, load_images(second, 48, progress=False), write=False)


def test_a_three_class_model_is_scored_on_its_covid_column():
    from helpers.models import build_cnn
    from helpers.models.train import predict

    model = build_cnn(SIZE, filters=(4, 8), augment=False, classes=3)
    images = np.random.default_rng(0).integers(0, 255, (4, SIZE, SIZE), dtype=np.uint8)
    prob = external.covid_probability(model, images)
    assert prob.shape == (4,)
    np.testing.assert_allclose(prob, predict(model, images)[:, -1], rtol=0, atol=1e-6)
