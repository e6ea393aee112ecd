# %% [markdown]
# # 05 · Evaluation and explainability: is the model any good, and for the right reasons?
#
# **What you will learn**
# - how to compare every model of the course in one table, next to the majority-class baseline,
#   with 95% confidence intervals that resample **patients**, not images;
# - how to read ROC and precision-recall curves, confusion matrices and a calibration curve
#   (with the Brier score);
# - how to choose a decision threshold on the validation split for a screening goal (few missed
#   cases), and what it does on the test split;
# - what a positive or negative call means at realistic prevalences (PPV and NPV at 1%, 5%, 20%);
# - how to evaluate three classes (normal, other pneumonia, COVID-19) as COVID-Net does: per-class
#   sensitivity and PPV with intervals, macro AUC, and the COVID-vs-rest operating point;
# - how much harder "COVID-19 or another pneumonia?" is than "COVID-19 or healthy?", measured (section 12);
# - how to compute **Grad-CAM** yourself (a gradient tape over the last convolution), compare its
#   maps across every trained model, and what a suspicious heatmap looks like;
# - why **external validation** (a second hospital) is the test that matters, and how a model
#   that reads a text marker instead of the lungs scores near-perfectly until the marker is gone.
#
# Why this matters: Roberts et al. (2021) screened 2,212 studies of machine learning for COVID-19 on
# chest X-rays and CT, included 62 in their systematic review, and found **none** of their models fit
# for clinical use, mostly for the reasons this notebook shows: biased datasets, no external
# validation, and models that learned the source of an image rather than the disease (DeGrave et
# al. 2021).
#
# **Run time:** (filled in by tools/build_notebooks.py from notebooks/timings.json)

# %% tags=["parameters"]
DATASET = "covid19-radiography"  # X-ray; "covid-ct" for CT; "synthetic" / "synthetic-ct" offline
TASK = "covid-vs-normal"  # or "covid-vs-pneumonia", "three-class" (helpers.data.tasks; X-ray only)
SMOKE = False  # True: tiny data, few epochs, fewer bootstrap resamples
STRICT = False  # True: fail instead of falling back to synthetic data
MAX_PER_CLASS = None  # cap images per class (whole patients)
TARGET_SENSITIVITY = 0.95  # screening: the share of COVID cases we want to catch
N_BOOT = 1000  # bootstrap resamples for every confidence interval
EPOCHS = 10  # for the quick CNNs this notebook trains itself
IMG_SIZE = 128  # for those quick CNNs
BATCH_SIZE = 32
GRADCAM_MODEL = "best"  # the model Grad-CAM explains: "best" (best validation AUC with a Keras model) or e.g. "vgg16"
LESSON_MAX_PER_CLASS = 400  # section 12: images per class for both tasks of the lesson (None: all)

# %%
if SMOKE:
    N_BOOT, EPOCHS, IMG_SIZE = min(N_BOOT, 200), min(EPOCHS, 4), min(IMG_SIZE, 64)
    LESSON_MAX_PER_CLASS = MAX_PER_CLASS  # the SMOKE datasets are small already

# %% [markdown]
# ## 1. The models to evaluate
#
# Notebooks 02-04 wrote one folder per trained model under `outputs/<dataset>/`: the model, its
# validation and test predictions, and the threshold chosen on the validation split. This notebook
# trains nothing it can read from there. If the folder is empty it says which notebooks to run and
# trains a quick CNN itself, so that every section below still runs. Only the runs of `TASK` are read
# (section 12 puts the tasks side by side). In Colab every notebook starts
# in a new VM with an empty folder: `PERSIST = True` in the setup cell keeps the models of 02-04 in
# your Google Drive, where this notebook finds them.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from helpers import data, evaluation, images, plots
from helpers.constants import MARKER_SUFFIX
from helpers.evaluation import multiclass, paired, recalibration
from helpers.explain import examples, external, sanity, shortcut
from helpers.models import train
from helpers.plots import review
from helpers.runs import quick_cnn, read_runs

dataset = data.course_dataset(DATASET, smoke=SMOKE, strict=STRICT, max_per_class=MAX_PER_CLASS, task=TASK)
runs = read_runs(dataset=dataset.name, task=TASK)
if not runs:  # nothing from notebooks 02-04 yet: a quick CNN, so that every section below runs
    print("No trained models yet: for the full comparison run notebooks 02-04 first. Training a quick CNN now.")
    runs = [quick_cnn(dataset, images.load_images(dataset, IMG_SIZE), name="cnn-quick", epochs=EPOCHS,
                      batch_size=BATCH_SIZE, verbose=2)]
rest = " and ".join(dataset.classes[:-1]) + (" together" if len(dataset.classes) > 2 else "")
print(f"Task {TASK}: classes {', '.join(dataset.classes)}. Every binary metric of sections 2-7 is COVID against "
      f"{rest}, from the probability of COVID.")
pd.DataFrame([{"model": run.model, "task": run.task, "weights": run.weights, "input size": run.metrics.get("img_size"),
               "threshold (chosen on val)": round(run.threshold, 3), "folder": str(run.path)} for run in runs])

# %% [markdown]
# ## 2. One table for all models, with 95% confidence intervals
#
# Every metric comes with a 95% interval from a **bootstrap**: draw the test set again, with
# replacement, many times, recompute the metric each time, and keep the middle 95% of the values.
# What is drawn matters. Several images often come from one patient, and they are not independent
# evidence: they share the anatomy, the scanner and the disease. Drawing *images* pretends there
# are more independent cases than there are and gives intervals that are too narrow. So we draw
# **patients**, each with all of their images.
#
# The `majority baseline` always answers the class most common in training. Its AUC is 0.5; a
# model that does not clearly beat it has learned nothing useful.
#
# **Which question.** With `TASK = "covid-vs-normal"` the table asks "COVID-19 or healthy?". With
# `"covid-vs-pneumonia"` or `"three-class"` it asks the same of each model's probability of COVID:
# **COVID against the rest** (another pneumonia, or both other classes; the line printed in section 1 says
# which), at the threshold chosen on validation. Sections 2-7 all read it that way; section 4 also shows a
# three-class model's own answer, one class of three.

# %%
table = evaluation.comparison_table(runs, n_boot=N_BOOT)
evaluation.format_comparison(table).drop(columns=["Dataset"])

# %% [markdown]
# The AUC column as a **forest plot**: one row per model, the square at its test AUC, the bar its
# 95% interval; the grey diamond and dashed line are the majority baseline.

# %%
plots.plot_forest(table);

# %% [markdown]
# **What to read here.** Look at the intervals before the point estimates: where two models'
# bars overlap widely, the test set cannot tell them apart, whatever the order of the squares. A
# bar that reaches the baseline's line belongs to a model that may have learned nothing useful.
# Sensitivity and specificity in the table are read at each model's own threshold, chosen on the
# validation split (Youden's J).
#
# **Overlapping bars do not prove that two models are equal.** Every model here was scored on the
# same test patients, and the patients one model finds hard the others often find hard too: their
# errors move together, and the *difference* between two models varies much less than either
# score. The paired bootstrap draws the same patients for both models and gives the interval of the
# difference itself. Each model is compared with the one of best **validation** AUC (the test split
# chooses nothing); an interval that excludes 0 (`clear`) says the test set does tell the two apart.
# DeLong's test (`delong_p`, AUC only) is the classical cross-check; it treats images as independent.

# %%
same_test = [run for run in runs if run.test_fingerprint in (None, dataset.test_fingerprint)]
if len(same_test) > 1:
    differences = paired.compare_to_best(same_test, n_boot=N_BOOT)
    display(differences.round(3))
    review.plot_paired_differences(differences, synthetic=dataset.synthetic)
    plt.show()
else:
    print("Only one model scored on this test set: there is nothing to compare it with yet.")

# %% [markdown]
# The same AUC interval for the model with the best **validation** AUC, drawing patients and then
# drawing images (never choose a model on the test split: that makes the test score optimistic):

# %%
best = max(runs, key=lambda run: run.metrics["val"]["auc"] or 0.0)  # chosen on validation
test = best.split("test")
by_unit = paired.patient_vs_image_interval(test, "auc", n_boot=N_BOOT)
print(by_unit.attrs["note"])
by_unit.round(3).rename_axis(f"{best.model}: AUC drawing")

# %% [markdown]
# The image-level interval is narrower whenever patients have several images: it is the
# interval a paper would report if it ignored who the images belong to. When every patient has
# one image, drawing patients *is* drawing images and the two intervals are the same (the note
# above says which case this dataset is). A perfect score leaves nothing to vary either: every
# resample gives the same AUC, and both intervals shrink to that one value. When the two intervals
# coincide, the comparison is repeated where patients have several images each: on the test
# split of the synthetic X-rays of section 10, scored by its quick CNN (trained here if it is not
# there yet; section 10 then reuses it).

# %%
if by_unit.attrs["coincide"]:
    several = shortcut.shortcut_dataset(smoke=SMOKE)  # synthetic X-rays, several images per patient
    several_run = quick_cnn(several, images.load_images(several, IMG_SIZE), epochs=EPOCHS, batch_size=BATCH_SIZE)
    several_units = paired.patient_vs_image_interval(several_run.split("test"), "auc", n_boot=N_BOOT)
    print(f"{several.name}: {several_units.attrs['note']}")
    display(several_units.round(3).rename_axis(f"{several.name} / {several_run.model}: AUC drawing"))
else:
    print(f"{dataset.name}: the two intervals above differ (the note above says why).")

# %% [markdown]
# **X-ray and CT side by side.** If the other modality has been run too (for example
# `make run-all DATASET=covid-ct` after an X-ray run), its models are listed next to these, each
# with its own baseline, so you can compare how hard the two tasks are.

# %%
other = [run for run in read_runs(task=TASK) if not run.dataset.endswith(MARKER_SUFFIX)
         and run.metrics.get("modality") not in (None, dataset.modality)]
if other:
    display(evaluation.format_comparison(evaluation.comparison_table(runs + other, n_boot=N_BOOT)))
else:
    print("Only one modality has results so far: run the series with a CT (or X-ray) DATASET to compare.")

# %% [markdown]
# ## 3. ROC and precision-recall curves
#
# The ROC curve shows sensitivity against 1 - specificity for every possible threshold; the
# precision-recall curve shows how often a COVID call is right (PPV) at each sensitivity. The dots
# are the operating points at the validation-chosen thresholds.

# %%
plots.plot_roc_pr(runs);

# %% [markdown]
# **What to read here.** The ROC curve does not depend on how common COVID is in the test set;
# the precision-recall curve does, and its dashed baseline is that prevalence. A curve close to
# the top-left (ROC) or top-right (PR) corner is good; a curve on the diagonal is a coin.
#
# ## 4. Confusion matrices
#
# The four counts behind sensitivity and specificity, at each model's threshold: rows are the
# truth, columns the call. The bottom-left cell counts the **missed COVID cases** (false negatives).
# For a three-class model these are COVID against the other two classes together.

# %%
plots.plot_confusion_matrices(runs);

# %% [markdown]
# ### Three classes: COVID-Net's evaluation
#
# In a clinic the hard question is not "COVID-19 or healthy?" but "COVID-19 or another pneumonia?".
# COVID-Net (Wang et al. 2020) answers it with three classes (normal, other pneumonia, COVID-19) and reports,
# per class, the **sensitivity** (of the images of that class, the share called that class) and the **PPV**
# (of the images called that class, the share that are). A three-class model calls an image its most
# probable class. Every interval below resamples patients, as in section 2. With a binary `TASK` this
# part says so and is skipped (`TASK = "three-class"` runs it).
#
# First the 3 x 3 confusion matrix of each three-class model on the test split: rows are the truth, columns
# the call, and the diagonal holds each class's sensitivity. The cells off the diagonal between PNEUMONIA and
# COVID are the confusions that matter.

# %%
three_class = [run for run in runs if run.multiclass]
if three_class:
    classes = three_class[0].classes
    three_rows = {run.model: multiclass.run_predictions(run, "test") for run in three_class}
    plots.plot_multiclass_confusion({name: multiclass.confusion(rows, classes) for name, rows in three_rows.items()},
                                    title=f"{dataset.name}, test split: rows the truth, columns the most probable class",
                                    synthetic=dataset.synthetic)
    plt.show()
else:
    print(f"TASK = {TASK!r} has two classes: the three-class evaluation is skipped (set TASK = 'three-class').")

# %% [markdown]
# Per class, the sensitivity and PPV with their 95% intervals, and the **macro one-vs-rest AUC**: each class
# against the other two, the three AUCs averaged. Next to the models, the **majority baseline**: always the
# class most common in training. Its constant scores rank nothing (macro AUC at chance level), its sensitivity
# is perfect for one class and zero for the others, and its accuracy is the share of that class in the test split.

# %%
if three_class:
    per_class = {name: multiclass.per_class_with_ci(rows, classes, n_boot=N_BOOT) for name, rows in three_rows.items()}
    display(pd.concat({name: multiclass.format_per_class(table) for name, table in per_class.items()},
                      names=["model", "class"]))
    train_labels = dataset.split("train")["label"]
    baseline = multiclass.majority_baseline(train_labels, next(iter(three_rows.values()))["y_true"], classes)
    counts = {name: multiclass.confusion(rows, classes).to_numpy() for name, rows in three_rows.items()}
    summary = [{"model": name, "accuracy": round(counts[name].trace() / counts[name].sum(), 3),
                "macro AUC (95% CI)": evaluation.format_interval(*per_class[name].attrs["macro_auc"])}
               for name in three_rows]
    summary.append({"model": f"majority baseline (always {baseline['majority_class']})",
                    "accuracy": round(baseline["accuracy"], 3), "macro AUC (95% CI)": f"{baseline['macro_auc']:.2f}"})
    display(pd.DataFrame(summary).set_index("model"))

# %% [markdown]
# **COVID against the rest, at a threshold chosen on validation.** A clinic acts on one question, "COVID-19 or
# not?". The model's probability of COVID answers it at a threshold chosen on the **validation** split (Youden's
# J), and the test split is read once at that threshold:

# %%
if three_class:
    for run in three_class:
        point = multiclass.covid_operating_point(multiclass.run_predictions(run, "val"), three_rows[run.model],
                                                 n_boot=N_BOOT)
        print(f"{run.model}: COVID against {rest}, threshold {point.attrs['threshold']:.3f} chosen on val")
        display(point.round(3))

# %% [markdown]
# **What to read here.** Read the PNEUMONIA and COVID rows together: a model that separates sick from healthy
# lungs but not one disease from the other has a high NORMAL sensitivity and confuses the two pneumonias (the
# off-diagonal cells between them). The per-class PPV depends on how common each class is in the test split,
# like the PPV of section 7. Intervals first: with few test patients per class they are wide.

# %% [markdown]
# ## 5. Calibration: can the probability be taken at its word?
#
# A model is calibrated when, among images it gives a probability of 0.8, about 80% really are
# COVID. The reliability curve plots the observed COVID rate against the mean predicted
# probability per bin; the diagonal is perfect calibration. The **Brier score** (in the legend) is
# the mean squared difference between probability and outcome: 0 is perfect, 0.25 is what
# always answering 0.5 scores.

# %%
plots.plot_calibration(runs);

# %% [markdown]
# **What to read here.** Points below the diagonal mean the model is over-confident about COVID,
# above it under-confident. Training with class weights (as the course does) shifts probabilities
# on purpose, and small networks trained briefly often squeeze them into a narrow band; the
# histogram below the curve shows where the probabilities actually fall. A badly calibrated model
# can still rank well (high AUC): never read its probability as a patient's risk.
#
# **Fixing it: temperature scaling.** Divide the model's logit by one number `T`, chosen to
# minimise the log loss on the **validation** split (Guo et al. 2017): `T > 1` softens an
# over-confident model, `T < 1` sharpens a timid one. Dividing by a positive number keeps the order
# of the scores, so the AUC does not move and the calls at the threshold stay the same; only the
# probabilities change. Every run saves its `T` in `metrics.json` (`calibration`). Below, the best
# model's test probabilities before and after, with the Brier score of each:

# %%
calibrated, temperature = recalibration.calibrate_predictions(best.predictions)
calibrated_test = calibrated[calibrated["split"] == "test"]
before_after = recalibration.before_after(calibrated_test["y_true"], calibrated_test["raw_probability"],
                                          calibrated_test["probability"])
print(f"{best.model}: T = {temperature.T:.2f}, fitted on {temperature.n_val} validation images; Brier score on "
      f"test {before_after['brier_before']:.3f} before, {before_after['brier_after']:.3f} after")
if temperature.note:
    print(temperature.note)
review.plot_reliability_before_after(calibrated_test["y_true"], calibrated_test["raw_probability"],
                                     calibrated_test["probability"], synthetic=dataset.synthetic);

# %% [markdown]
# **What to read here.** Calibration is fitted on a few validation images and judged on test
# images it never saw: a Brier score that does not improve on test says the validation split was
# too small to learn the correction, not that the model is calibrated. Class weights also shift
# the probabilities as a whole (they make COVID look as common as NORMAL), which one temperature
# can only partly undo.
#
# ## 6. A threshold for screening, chosen on the validation split
#
# Youden's J balances sensitivity and specificity. A screening test has another goal: miss few
# cases, and accept more false alarms that a second test will sort out. We take the highest
# threshold whose sensitivity on the **validation** split reaches `TARGET_SENSITIVITY`, and only then
# look at the test split.

# %%
val = best.split("val")
screening = evaluation.choose_threshold(val["y_true"], val["probability"], rule="sensitivity",
                                      target=TARGET_SENSITIVITY)
n_covid_val = int(val["y_true"].sum())
print(f"{best.model}: {n_covid_val} COVID images in the validation split, so one missed case moves the validation "
      f"sensitivity by {100 / max(n_covid_val, 1):.1f} percentage points")
examples.operating_points(best, {"Youden's J": best.threshold,
                                 f"sensitivity >= {TARGET_SENSITIVITY:.0%} on val": screening}, n_boot=N_BOOT)

# %%
plots.plot_threshold_tradeoff(best);

# %% [markdown]
# **What to read here.** Where Youden's threshold misses the target on validation, the screening
# threshold is lower and buys sensitivity with specificity; where Youden's already catches every
# validation case, the screening rule may even pick a *higher* threshold that still meets the
# target. Either way, on the test split the sensitivity may fall short of the target: the
# threshold was fitted to the few validation cases counted above, where each missed case moves the
# sensitivity by the step printed there. The test interval says how far short it may fall.
#
# ## 7. What a call means at a realistic prevalence
#
# The test set's prevalence is an accident of how the dataset was collected. In a screening clinic
# COVID may be 1% of patients, in a COVID ward 20% or more. Bayes' rule turns the test sensitivity
# and specificity (at the screening threshold) into the PPV (how often a COVID call is right) and
# the NPV (how often a call of "not COVID" is right) at those prevalences.

# %%
at_screening = evaluation.binary_metrics(test["y_true"], test["probability"], screening)
print(f"{best.model} at threshold {screening:.3f}: sensitivity {at_screening['sensitivity']:.2f}, "
      f"specificity {at_screening['specificity']:.2f} (test split)")
evaluation.predictive_values(at_screening["sensitivity"], at_screening["specificity"],
                           prevalences=(0.01, 0.05, 0.2)).set_index("prevalence").round(3)

# %% [markdown]
# **What to read here.** At 1% prevalence even a specific test produces mostly false alarms (exercise
# 2 works an example through by hand): read the PPV row at 0.01. The NPV is high at low prevalence
# almost whatever the model does. This is why a screening model's positive
# call needs confirmation (PCR), and why accuracy on a balanced test set says little about use.
# A perfect test specificity gives a perfect PPV here, but it was measured on a small number of
# normal images: plug in the lower end of its confidence interval (section 6) to see a more honest PPV.
#
# ## 8. Grad-CAM: where did the model look?
#
# Grad-CAM (Selvaraju et al. 2017) asks which regions of the last convolution's feature maps
# pushed the COVID score up. It needs one gradient, and fits in a dozen lines:
#
# 1. A second model that returns two things for an image: the **feature maps** of the last
#    convolution (`h x w x C`: `C` channels, each a map of where its pattern was found) and the
#    input of the final sigmoid unit.
# 2. Under a `tf.GradientTape`, compute the COVID **logit** from that input: the score *before*
#    the sigmoid (a three-class model has a softmax instead: its COVID unit, the last, gives the
#    score). (The sigmoid is flat near 0 and 1, so the gradient of the probability vanishes
#    exactly for the most confident predictions.)
# 3. The gradient of the logit with respect to the feature maps, averaged over the positions,
#    gives **one weight per channel**: how much more COVID the model sees when that channel fires.
# 4. The weighted sum of the channels, with the negative part cut off by a **ReLU** (we want the
#    evidence *for* COVID), scaled to 0..1 and **resized** to the image.
#
# Everything is computed in `float32`, also when the model runs in `float16` on a GPU.

# %% tags=["lesson-gradcam"]
import keras
import tensorflow as tf


def grad_cam(model, images, layer):
    """Grad-CAM maps (N x H x W, 0..1) of the COVID logit for N x H x W x 3 images at the model's input size."""
    head = model.layers[-1]  # Dense: one sigmoid (the probability of COVID), or a softmax whose last unit is COVID
    grad_model = keras.Model(model.input, [model.get_layer(layer).output, head.input])
    with tf.GradientTape() as tape:
        conv, features = grad_model(images, training=False)
        tape.watch(conv)  # we want the gradient with respect to the feature maps
        kernel, bias = tf.cast(head.kernel, tf.float32), tf.cast(head.bias, tf.float32)
        logit = (tf.matmul(tf.cast(features, tf.float32), kernel) + bias)[:, -1]  # COVID's score before the sigmoid
    grads = tf.cast(tape.gradient(logit, conv), tf.float32)  # N x h x w x C
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(conv, tf.float32), axis=-1))  # N x h x w
    cam = tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=(1, 2), keepdims=True))  # each map to 0..1
    return tf.image.resize(cam[..., None], images.shape[1:3])[..., 0].numpy()  # bilinear, to the image size

# %% [markdown]
# The model to explain is `GRADCAM_MODEL`: by default (`"best"`) the one with the best
# **validation** AUC among the models with a saved Keras model (hybrids have no convolution of
# their own to take a gradient through), or the one you name. It gets two COVID and two NORMAL
# test images, from different patients, at its own input size; `gradcam_layer` names the layer
# whose maps Grad-CAM weighs (`last_conv` for the CNN, for example `block5_conv3` for VGG16).
# The second line printed says how coarse its map is, read from that layer's output shape.

# %%
from helpers.explain import gradcam as reference_gradcam
from helpers.models import gradcam_layer
from helpers.plots import plot_gradcam_grid

explained = examples.gradcam_run(runs, GRADCAM_MODEL)  # chosen on validation, never on test
test_rows = explained.split("test").drop_duplicates("patient_id")
chosen = pd.concat([test_rows[test_rows["y_true"] == 1].head(2), test_rows[test_rows["y_true"] == 0].head(2)])


def chosen_images(size):
    """The chosen test images, grayscale, at ``size`` px."""
    image_set = images.load_images(dataset, size, progress=False)
    where = pd.Series(range(len(image_set)), index=image_set.manifest["path"])
    return image_set.images[where[chosen["path"]].to_numpy()]


def maps_of(run):
    """Grad-CAM of the chosen images by the lesson's grad_cam: (images, maps, p(COVID), threshold, the model)."""
    model = run.keras_model()
    gray = chosen_images(model.input_shape[1])
    batch = np.repeat(gray[..., None], 3, axis=-1).astype("float32")  # grey on three channels, 0..255
    covid = model.predict(batch, verbose=0)[:, -1]  # P(COVID): the sigmoid, or a softmax's last class
    return gray, grad_cam(model, batch, gradcam_layer(model)), covid, run.threshold, model


explained_cams = maps_of(explained)
gray, maps, _, _, model = explained_cams
print(f"Grad-CAM of {explained.name} (GRADCAM_MODEL = {GRADCAM_MODEL!r}) on {len(chosen)} test images")
print(examples.grid_sentence(model, name=explained.name))
print(f"largest difference from helpers.explain.gradcam: {np.abs(maps - reference_gradcam(model, gray)).max():.1e}")

# %% [markdown]
# The last line compares our dozen lines with the course's reference implementation,
# `helpers.explain.gradcam` (which the upload demo and the command line use): a difference of
# the order of 1e-7 is float rounding, and a test of the course keeps it that small.
#
# The same images through every other saved Keras model too, for comparison (one row per image,
# the chosen model in the first column of maps; each model's grid is printed):

# %%
cams = {explained.name: explained_cams}
for run in runs:
    if run.kind == "keras" and run.path != explained.path:
        cams[run.name] = maps_of(run)
        print(examples.grid_sentence(cams[run.name][-1], name=run.name))
panels, heatmaps, titles = [], [], []
for i, (_, row) in enumerate(chosen.iterrows()):
    panels.append(gray[i])
    heatmaps.append(None)
    titles.append(f"{row['label']} (patient {row['patient_id']})")
    for name, (small, model_maps, prob, threshold, _) in cams.items():
        panels.append(small[i])
        heatmaps.append(model_maps[i])
        titles.append(f"{name}: p(COVID) = {prob[i]:.2f}\ncall: {'COVID' if prob[i] >= threshold else 'NORMAL'}")
plot_gradcam_grid(panels, heatmaps, titles, ncols=1 + len(cams), synthetic=dataset.synthetic, panel_size=2.4,
                  title=f"{dataset.name}: Grad-CAM of the same test images, {explained.name} first");

# %% [markdown]
# **What to read here.** Do the models look at the same places? Maps that agree across networks
# trained differently, and sit on the lungs, are more reassuring than one model's map alone. The
# maps' coarseness differs too: a map is only as fine as its layer's grid (printed above), and it
# is stretched to the image.
#
# Next, the reference helper on the calls that matter most, for the chosen model: test images it
# got right (TP, TN) and wrong (FN: a missed case, FP: a false alarm), the most confident of each.
# An all-blue map means no region pushed towards COVID.

# %%
plots.plot_outcome_gradcam(explained, *examples.outcome_gradcam(explained, dataset, n=2))
plt.show()

# %% [markdown]
# **Two traps in these maps.** Each map above is scaled to its own maximum, so every map shows a
# hot spot, even for a call with hardly any evidence; and a map can look plausible whatever the
# model learned. Below, the same calls with **one colour scale for all maps** (each map's peak is
# printed, relative to the largest), each map explaining the class the model *called* (for a
# NORMAL call, the evidence against COVID), next to the map of the same network with its top
# layers **re-initialised** at random: the sanity check of Adebayo et al. (2018). If the two maps
# look alike (a rank correlation near 1), the map shows the image's edges, not what the model
# learned, and it explains nothing. An empty randomised map has no rank correlation (`nan`).

# %%
calls, call_images, _ = examples.outcome_gradcam(explained, dataset, n=1)
check = sanity.sanity_check(explained.keras_model(), call_images, threshold=explained.threshold)
call_titles = [f"{outcome}: p(COVID) = {p:.2f}" for outcome, p in zip(calls["outcome"], calls["probability"])]
review.plot_sanity_check(call_images, check, titles=call_titles, synthetic=explained.synthetic)
plt.show()
print(f"{explained.name}: rank correlation of the trained and the randomised maps, per call: "
      f"{np.round(check['similarity'], 2).tolist()}")

# %% [markdown]
# **How to read a heatmap, and what should worry you.**
# - *Plausible:* heat over the lung fields, for COVID often both lower zones and the periphery.
# - *Suspicious:* heat on **text or markers** (the "L"/"R" laterality marker, "PORTABLE", a
#   hospital's name), on the **image borders or corners**, or **outside the lungs** (shoulders,
#   neck, abdomen, the collimation edge, the CT table). These differ between hospitals and
#   devices, not between diseases: DeGrave et al. (2021) found exactly such maps in published
#   COVID-19 models.
# - *Always:* a map is coarse (one cell of its grid covers the block of pixels printed with the
#   chosen model above), it shows one image, and a plausible map does not prove a model is right. Look at many
#   maps, wrong calls especially, and test what they suggest (section 10 does).
#
# For CT, the same rules hold for slices: heat outside the body or on text overlays is a warning.
#
# ## 9. External validation: a second hospital
#
# Every number so far came from one dataset, split by patient. Images from one source share
# scanners, protocols, patient populations and text overlays, and a model can learn those. The
# test that matters is **external**: images from another hospital, scored with the threshold
# fixed on our own validation split (nothing is tuned on the external images).
#
# - Real X-ray models are applied to **Actualmed** (COVID-19 and normal images from one hospital
#   network, collected by the COVID-Net team). Some public collections were merged into others,
#   so a different source name does not make a different image: before scoring, every external
#   image is compared with our train and val images by the perceptual hash of notebook 01, and the
#   near-duplicates are dropped and counted (the line printed below; not for the synthetic
#   stand-in, whose images are our own test patients by construction).
# - Real CT models (COVID-CT) are applied to the CT images of the **ieee8023** collection. Almost
#   all of them are COVID: with one class only, AUC and specificity are undefined, and the record
#   says so and reports sensitivity alone, with its interval.
# - On synthetic data there is no second hospital. We use the same test patients imaged by a
#   "device" with the opposite habit: the `synthetic-marker` set (a corner tag on most COVID
#   images) for models trained on `synthetic`, and the reverse. A stand-in, not a validation.
#
# Every saved model is scored, the VGG16 hybrids of notebook 04 too (through the same prediction
# code as the upload demo and `helpers predict`), each at its own input size. The table gives
# sensitivity and specificity with their 95% intervals (patient bootstrap), or `undefined` where
# the external set lacks the class. The result of each model goes to
# `outputs/<dataset>/external/<model>-on-<external>.json`, and `python -m helpers report` puts it
# in the course report.

# %%
found = external.external_dataset(dataset, smoke=SMOKE, max_per_class=MAX_PER_CLASS)
if found:
    second_hospital, split = found
    records = external.validate_runs_externally(runs, second_hospital, split=split, n_boot=N_BOOT, seen=dataset)
    display(external.external_summary(records).round(3))

# %% [markdown]
# **What to read here.** Compare each model's external AUC with its internal test AUC. A model
# that learned the disease loses a little (new scanners, new patients); a model that learned its
# source loses a lot, and its sensitivity at the fixed threshold can collapse. Published COVID-19
# models that were validated externally usually lost much of their performance (Roberts et al.
# 2021; DeGrave et al. 2021). On synthetic data the stand-in asks a narrower question: does a model
# that never saw a tag tolerate a new overlay at a new hospital? Small CNNs often do not: a bright
# patch they never met shifts their scores although it says nothing about the lungs. Section 10
# shows the opposite failure, a model that learned the tag.
#
# ## 10. The shortcut experiment: a model that reads the label off the image
#
# This section always runs on **synthetic X-rays** (also when `DATASET` is a CT set), because we
# need a dataset where we know the answer. In `synthetic-marker`, most COVID images and a few
# NORMAL images (the table below counts them) carry a white "PORTABLE" tag in the top-right
# corner, as if the COVID patients had been imaged on the ward's portable device; the opacities of
# COVID are made faint. A tag like this
# is real: in 2020 many COVID-19 X-rays were portable AP films from intensive care, the normals
# came from other hospitals, and the images carried different text.

# %%
marker_dataset = shortcut.shortcut_dataset(smoke=SMOKE)
marker_images = images.load_images(marker_dataset, IMG_SIZE)
pd.crosstab(marker_dataset.manifest["label"], marker_dataset.manifest["marker"].map({True: "tag", False: "no tag"}))

# %%
shown = marker_images.manifest.groupby(["label", "marker"]).head(2).sort_values(["label", "marker"]).index
plots.plot_images(marker_images.images[shown], [f"{r.label}, {'tag' if r.marker else 'no tag'}"
                  for r in marker_images.manifest.loc[shown].itertuples()], ncols=8, synthetic=True,
                  title="synthetic-marker: the tag goes with the label, mostly");

# %% [markdown]
# A quick CNN, trained and selected exactly as in notebook 02 (its artifacts go to
# `outputs/synthetic-marker/cnn/`; when a run is already there, it is used instead of training again):

# %%
marker_run = quick_cnn(marker_dataset, marker_images, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=2)
marker_model, marker_metrics = marker_run.keras_model(), marker_run.metrics
print(data.SYNTHETIC_BANNER)
print(train.summary_line(marker_metrics))

# %% [markdown]
# Look at the test AUC printed above, on a patient-level split, with a threshold chosen on
# validation: where it is high, by every rule of the previous sections this model looks excellent.
# Grad-CAM on tagged test images (one per patient, and a tagged NORMAL image when the test split
# has one), as they are and with the corner
# masked. Each title gives the probability of COVID, the call at the model's threshold, and the share
# of the map's heat in the tag's corner (the top-right region, x > 50% and y < 35% of the image):

# %%
plots.plot_shortcut_gradcam(*shortcut.tag_gradcam(marker_model, marker_images, n=4),
                            threshold=marker_metrics["threshold"]);

# %% [markdown]
# Now the experiment. The same test images are scored three ways, at the same threshold: as they
# are; with the tag's corner blanked (`mask_marker`); and with a tag pasted onto every NORMAL image
# (`paste_marker`). A model that reads the lungs does not care; a model that reads the tag does.

# %%
shortcut.shortcut_experiment(marker_model, marker_images).round(3)

# %% [markdown]
# And the "second hospital": the same test patients, imaged on a device that prints no tag.

# %%
plain, plain_split = external.external_dataset(marker_dataset, smoke=SMOKE, **shortcut.SHORTCUT_OPTIONS)
record = external.external_validation(marker_model, plain, images.load_images(plain, IMG_SIZE),
                                      trained_on=marker_dataset, split=plain_split, n_boot=N_BOOT)
external.external_summary([record]).round(3)

# %% [markdown]
# **What to read here.** At the fixed threshold, masking the tag makes the model miss COVID cases
# it caught before (sensitivity falls), and a tag on every NORMAL image makes it call them COVID
# (specificity collapses): the tag drives its calls. How far the **AUC** falls depends on how much of
# the faint disease the model picked up as well. With `SMOKE=True` (a few epochs on small images)
# it learned little else and the AUC falls far; in a full run (more images, more epochs) it also
# learns some of the opacities, and the AUC can stay high while the calls at its threshold go
# wrong: a ranking metric can hide a shortcut. The Grad-CAM maps of tagged images sit on the tag
# (the last convolution is coarse, so the heat spreads around it) and move to the chest once the
# tag is gone. On the "second hospital" the model misses most COVID cases the same way. Nothing in
# sections 2-7 could have revealed this: the test split came from the same source as the training
# split and shared its shortcut. Only Grad-CAM, a targeted experiment and external data did. (The
# exact numbers vary from run to run; the direction does not.)
#
# ## 11. Lung masking: does the model look at the lungs?
#
# Grad-CAM hints at where a model looked; masking tests it. Maguolo & Nanni (2021) blacked out the centre
# of chest X-rays, where the lungs are, and their classifiers still told the COVID-19 datasets apart;
# DeGrave et al. (2021) found published models whose evidence lay outside the lung fields. We score a
# trained model on the same test images, at the threshold it chose on validation, three ways: as they are,
# with the lungs blacked out, and with everything *but* the lungs blacked out. A model that still scores
# well **without the lungs reads the hospital, not the disease**; a model that reads the disease falls to
# chance without them and keeps its score on the lungs alone.
#
# The masks come with the data: the COVID-19 Radiography Database ships a lung mask per image, and so does
# the synthetic generator (other datasets have none, and the experiment skips them). The tagged synthetic set
# of section 10 always takes part, because there we know the answer: its tag sits outside the lungs.
# The masking itself is three lines of numpy. The mask is widened by a few pixels first (`masking.dilate`,
# 2% of the image side) so that no lung edge leaks into "lungs removed":

# %%
import numpy as np

from helpers.explain import masking

if "marker_model" not in globals():  # section 10 did not run in this session: train its model the same way
    marker_dataset = shortcut.shortcut_dataset(smoke=SMOKE)
    marker_images = images.load_images(marker_dataset, IMG_SIZE)
    marker_run = quick_cnn(marker_dataset, marker_images, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=2)
    marker_model, marker_metrics = marker_run.keras_model(), marker_run.metrics
marker_masks = masking.load_lung_masks(marker_dataset, marker_images)  # test images, at the model's size
test_images = marker_images.images[marker_masks.rows]

lungs = masking.dilate(marker_masks.masks)       # True inside the lungs, a few pixels wider
lungs_removed = np.where(lungs, 0, test_images)  # black out the lungs: only what is around them is left
only_lungs = np.where(lungs, test_images, 0)     # black out everything but the lungs

assert np.array_equal(lungs_removed, masking.mask_lungs(test_images, marker_masks.masks, keep="outside"))
assert np.array_equal(only_lungs, masking.mask_lungs(test_images, marker_masks.masks, keep="lungs"))

# %% [markdown]
# `masking.masking_experiment` scores a model on the three versions (the reference of these lines is
# `masking.mask_lungs`), each AUC with its 95% interval (patient bootstrap), and sensitivity and
# specificity at the model's validation threshold. It runs on the best model of `DATASET` (highest
# validation AUC) when the dataset has masks, and on the CNN of section 10 that learned the tag:

# %%
masking_tables, lung_images, lung_masks = {}, None, None
best_saved = masking.best_predictor(runs) if masking.has_masks(dataset.manifest) else None
if best_saved is not None:
    masked_run, predict_fn, model_size = best_saved
    lung_images = images.load_images(dataset, model_size)
    lung_masks = masking.load_lung_masks(dataset, lung_images)
    print(f"Masking experiment on {dataset.name}/{masked_run.model} ({model_size}px, {len(lung_masks)} test "
          f"images, threshold {masked_run.threshold:.3f} chosen on val)")
    masking_tables[f"{dataset.name}/{masked_run.model}"] = masking.masking_experiment(
        predict_fn, lung_images, lung_masks, masked_run.threshold, n_boot=N_BOOT)
elif masking.has_masks(dataset.manifest):
    print(f"No run of {dataset.name} has a saved model (model.keras, or a hybrid's files) to mask: skipped.")
else:
    print(f"{dataset.name} ships no lung masks (of the course's datasets only covid19-radiography and the "
          "synthetic sets do): the masking experiment on its models is skipped.")
tag_reader = f"{marker_dataset.name}/cnn (section 10)"
print(f"Masking experiment on {tag_reader} ({IMG_SIZE}px, {len(marker_masks)} test images, "
      f"threshold {marker_metrics['threshold']:.3f} chosen on val)")
tag_table = masking.masking_experiment(marker_model, marker_images, marker_masks, marker_metrics["threshold"],
                                       n_boot=N_BOOT)
masking.format_masking({**masking_tables, tag_reader: tag_table})

# %%
if dataset.synthetic or not masking_tables:  # one synthetic figure: the tagged images, every model's AUCs
    masking.masking_figure(marker_images, marker_masks, {**masking_tables, tag_reader: tag_table}, synthetic=True)
else:  # real data and synthetic data never share a figure
    masking.masking_figure(lung_images, lung_masks, masking_tables, synthetic=False)
    plt.show()
    masking.masking_figure(marker_images, marker_masks, {tag_reader: tag_table}, synthetic=True)
plt.show()

# %% [markdown]
# **What to read here.** For each model compare the three AUCs, intervals first. The CNN that learned the
# tag keeps its AUC with the lungs removed, because the tag is still there, and loses much of it on the
# lungs alone, where only the faint opacities it barely learned are left. A model trained on the plain
# synthetic set, whose only signal is the opacities inside the lungs, does the opposite: near chance (0.5)
# without the lungs, close to its full AUC on the lungs alone (run with `DATASET="synthetic"` to see it).
# On real data a model whose AUC stays far above chance without the lungs has learned something about the
# image that is not the lungs: the hospital, the device, the text, the patient's position. Sensitivity
# and specificity can swing wildly under masking even where the AUC holds: a black region shifts every
# score, and the threshold was chosen on complete images. Two limits: a masked image is unlike anything
# the model was trained on, so a fall in AUC is a hint, not proof, that the lungs mattered; and Maguolo &
# Nanni went further and *trained* on the masked images (exercise 5).
#
# ## 12. COVID-19 or another pneumonia? The question a clinic asks
#
# Many early public COVID-19 classifiers, and sections 2-11, answer "COVID-19 or healthy lungs?". In a
# clinic the patient in front of you is sick, and the question is "COVID-19 or another pneumonia?" A model
# that separates COVID-19 from healthy lungs may only have learned "sick or not": any opacity, any
# consolidation, would push it towards COVID. Reviews name the missing pneumonia controls as one reason the
# binary results did not hold up (Roberts et al. 2021); COVID-Net's COVIDx benchmark (Wang et al. 2020) has
# them.
#
# How much harder is the clinic's question? We measure it instead of asserting it: **the same quick CNN**
# (same seed, same input size, the same budget of `EPOCHS` with early stopping on validation, the same cap of
# images per class) trained twice on the same
# dataset, once for `covid-vs-normal` and once for `covid-vs-pneumonia`, each scored on its own test split at
# its own validation threshold. On the synthetic sets the two diseases differ the way radiologists describe
# them (`helpers/data/synthetic.py`): COVID-19 as bilateral, peripheral ground glass in the lower zones, the
# other pneumonia as a consolidation of one lobe on one side. (COVID-CT has no pneumonia class; for it the
# lesson runs on `synthetic-ct`.) When the two runs are already in `outputs/`, they are read, not trained again
# (the COVID-vs-normal one is section 1's quick CNN when that one was trained on the same images).

# %%
from helpers.data.tasks import NOT_FOR_TASKS

lesson_source = DATASET if DATASET not in NOT_FOR_TASKS else "synthetic-ct"
lesson_name = "cnn-quick" + (f"-cap{LESSON_MAX_PER_CLASS}" if LESSON_MAX_PER_CLASS else "")
lesson = {}
for task in ("covid-vs-normal", "covid-vs-pneumonia"):
    task_data = data.course_dataset(lesson_source, smoke=SMOKE, strict=STRICT, max_per_class=LESSON_MAX_PER_CLASS,
                                    task=task)
    task_images = images.load_images(task_data, IMG_SIZE, progress=False)
    lesson[task] = (task_data, task_images, quick_cnn(task_data, task_images, name=lesson_name, epochs=EPOCHS,
                                                      batch_size=BATCH_SIZE))
    train_counts = task_images.manifest.loc[task_images.manifest["split"] == "train", "label"].value_counts()
    print(f"{task} on {task_data.name}: training images {train_counts.to_dict()}, {IMG_SIZE}px, "
          f"{lesson[task][2].metrics.get('epochs')} epochs run (at most {EPOCHS}), seed 42")
side_by_side = evaluation.task_comparison([run for _, _, run in lesson.values()], n_boot=N_BOOT)
evaluation.format_tasks(side_by_side)

# %% [markdown]
# The same numbers as one sentence, and whether the test splits can tell the two tasks apart. The two tasks
# have different test images, so a paired comparison (section 2) is impossible here: separate intervals that do
# not overlap show a clear difference; intervals that overlap leave it open.

# %%
easy, hard = (side_by_side.set_index("task").loc[task] for task in ("covid-vs-normal", "covid-vs-pneumonia"))
aucs = {name: evaluation.format_interval(row["auc"], row["auc_low"], row["auc_high"])
         for name, row in (("normal", easy), ("pneumonia", hard))}
apart = hard["auc_high"] < easy["auc_low"] or easy["auc_high"] < hard["auc_low"]
print(f"Test AUC of the same CNN: COVID vs NORMAL {aucs['normal']}, COVID vs PNEUMONIA {aucs['pneumonia']}; "
      f"difference (pneumonia minus normal) {hard['auc'] - easy['auc']:+.2f}. "
      + ("The intervals do not overlap: the test splits tell the two tasks apart." if apart else
         "The intervals overlap: these test splits cannot tell the two tasks apart."))

# %% [markdown]
# **Did the COVID-vs-normal model learn "sick or not"?** Show it the other pneumonia, which it never saw in
# training: the PNEUMONIA images of the second task's test split, scored by the first task's CNN at *its*
# validation threshold. Its specificity on them (the share it does *not* call COVID) next to its specificity on
# the NORMAL images of its own test split, each with its patient-bootstrap interval:

# %%
normal_run = lesson["covid-vs-normal"][2]
pneumonia_images = lesson["covid-vs-pneumonia"][1]
unseen = ((pneumonia_images.manifest["split"] == "test") & (pneumonia_images.manifest["label"] == "PNEUMONIA")).to_numpy()
pneumonia_scored = pneumonia_images.manifest[unseen].assign(
    y_true=0, probability=train.predict(normal_run.keras_model(), pneumonia_images.images[unseen]))
own_normals = normal_run.split("test").query("y_true == 0")
specificity = pd.DataFrame({
    name: evaluation.metrics_with_ci(rows, normal_run.threshold, metrics=("specificity",), n_boot=N_BOOT)
    .loc["specificity"].round(3)
    for name, rows in ((f"NORMAL test images ({len(own_normals)})", own_normals),
                       (f"PNEUMONIA test images ({len(pneumonia_scored)}, never seen)", pneumonia_scored))
}).T
normals, pneumonias = (specificity.iloc[i] for i in (0, 1))
overlap = pneumonias["high"] >= normals["low"] and normals["high"] >= pneumonias["low"]
print(f"covid-vs-normal CNN at its validation threshold {normal_run.threshold:.3f}: specificity (not called COVID) "
      f"{pneumonias['estimate']:.2f} on the unseen pneumonias, {normals['estimate']:.2f} on normal lungs; "
      + ("the intervals overlap: these test images cannot tell the two apart." if overlap else
         "the intervals do not overlap."))
specificity

# %% [markdown]
# **What to read here.** Read the printed sentence and the two tables, intervals first. Where COVID against
# PNEUMONIA scores lower than COVID against NORMAL with intervals apart, the clinic's question is measurably
# harder for this network, on this data; where they overlap, these test splits cannot say (too few patients,
# or both tasks near the ceiling: a network that learned both diseases well scores alike on both). Where the
# COVID-vs-normal CNN's specificity on the pneumonias it never saw falls below its specificity on normal lungs,
# it calls other pneumonias COVID: some of what it learned is "sick or not", and its COVID-vs-normal score says
# little about the patients a clinic sees. The synthetic diseases were drawn to differ (laterality, zone,
# texture), so a network can learn the difference there. On real radiographs a viral pneumonia can look much like
# COVID-19 (bilateral and patchy too), so the difference is expected to be harder to learn; only pneumonia
# controls, and ideally an external set, tell how hard.
#
# **Every task of this dataset side by side.** When notebooks 02-04 ran for several tasks (set `TASK` in each,
# or `make run-all TASK=...`), every model of every task (the two CNNs of this lesson aside), COVID against the
# rest at its validation threshold, with the macro AUC of the three-class models:

# %%
lesson_runs = {run.path for _, _, run in lesson.values()}
every_task = sorted((run for run in read_runs(dataset=dataset.name, task=None) if run.path not in lesson_runs),
                    key=lambda run: (run.task, run.model))
if len({run.task for run in every_task}) > 1:
    display(evaluation.format_tasks(evaluation.task_comparison(every_task, n_boot=N_BOOT)))
else:
    print(f"Only runs of one task for {dataset.name} so far: run notebooks 02-04 with another TASK to compare.")

# %% [markdown]
# ## Key takeaways
# - Report every metric with a confidence interval that resamples patients, next to the
#   majority-class baseline; choose models and thresholds on validation, never on test.
# - ROC AUC ranks; calibration, the threshold and the prevalence decide what a call means. At 1%
#   prevalence most positive calls of a good-looking model are false alarms.
# - Grad-CAM is a coarse hint, not proof; heat on text, borders or outside the lungs is a red flag.
# - A near-perfect score on an internal test split can come entirely from a shortcut. Only
#   external validation, and experiments that remove the suspected shortcut, can tell.
# - Black out the lungs and score again: a model that keeps its AUC without the lungs reads the
#   hospital, not the disease.
# - "COVID-19 or healthy?" is not the clinic's question. Train and test against other pneumonias too
#   (`TASK = "covid-vs-pneumonia"` or `"three-class"`), and report each class's sensitivity and PPV.
# - Everything here on synthetic data shows that the code works, not that anything detects
#   COVID-19; and even on real data, this course's models are teaching material, not devices.
#
# ## Exercises
# Every choice below is made on the **validation** split, as in the notebook: the test split is
# measured once, after the choices, and never used to compare settings.
#
# 1. Set `TARGET_SENSITIVITY = 0.99` and run section 6 again. What happens to the threshold and to
#    the **validation** specificity? (Only then, for the record, look at the test columns.)
# 2. By hand: a test with sensitivity 0.95 and specificity 0.90 at 1% prevalence. Of 10,000 people
#    screened, how many positive calls are there, and how many of them have COVID?
# 3. Remove the shortcut from training. Keep the images (`tagged = marker_images.images.copy()`),
#    mask the corner of every image (`marker_images.images[:] = shortcut.mask_marker(tagged)`), train
#    a CNN without saving it (`from helpers.models import build_cnn`, `model = build_cnn(IMG_SIZE)`,
#    `train.fit(model, marker_images, epochs=EPOCHS)`),
#    put the tags back (`marker_images.images[:] = tagged`) and run
#    `shortcut.shortcut_experiment(model, marker_images, split="val")` next to
#    `shortcut.shortcut_experiment(marker_model, marker_images, split="val")`. How do the two models'
#    validation AUCs change when the tag is masked or pasted?
# 4. Why is the image-level bootstrap interval in section 2 narrower than the patient-level one,
#    and which one belongs in a paper?
# 5. In the `grad_cam` cell, replace `tf.nn.relu(...)` by `tf.abs(...)`, or average the gradients
#    over the channels instead of the positions (`axis=-1`). What happens to the maps of NORMAL
#    images, and why does Grad-CAM keep only the positive part?
# 6. Train on masked images, as Maguolo & Nanni did. Keep the images (`kept = marker_images.images.copy()`),
#    read every image's mask (`all_masks = masking.load_lung_masks(marker_dataset, marker_images, split=None)`;
#    every synthetic image has one), black out the lungs of all of them (`marker_images.images[:] =
#    masking.mask_lungs(kept, all_masks.masks, keep="outside")`), train a CNN without saving it as in exercise 3
#    (`model = build_cnn(IMG_SIZE)`, `train.fit(model, marker_images, epochs=EPOCHS)`), put the images back
#    (`marker_images.images[:] = kept`) and run `masking.masking_experiment(model, marker_images, marker_masks)`.
#    Its "lungs removed" row is a model that never saw a lung, scored on images like the ones it trained on.
#    Can it detect "COVID"?
#
# <details><summary>Solutions</summary>
#
# 1. The threshold drops (it must catch almost every validation case) and the validation
#    specificity falls with it; the PPV at 1% prevalence falls further. With few validation cases,
#    0.99 often means "catch all of them", and the test sensitivity may still miss the target.
# 2. 100 people have COVID and 95 of them are called positive; 9,900 do not and 990 of them are
#    called positive. Of 1,085 positive calls only 95 (8.8%) are COVID: PPV = 0.95 x 0.01 /
#    (0.95 x 0.01 + 0.10 x 0.99) = 0.088. The NPV is 8,910 / 8,915 = 0.9994.
# 3. Without the tag to read, the CNN must use the faint opacities: its validation AUC is below
#    the shortcut model's score with the tag (the disease is made hard on purpose), and it changes
#    much less when the corner is masked or a tag is pasted: it no longer depends on the tag. That
#    lower, steadier number is the honest one.
# 4. Images of one patient are correlated; drawing images treats each as independent evidence and
#    understates the uncertainty. A test split of *n* patients with three images each holds about
#    *n* independent cases, not 3*n*. The patient-level interval belongs in a paper.
# 5. With `tf.abs`, regions that argue *against* COVID light up as well, so NORMAL images get warm
#    maps that mean the opposite of what they seem to; with the average over channels the map is no
#    longer a weighted sum of the feature maps and loses its spatial meaning. The ReLU keeps only the
#    evidence for the class asked about, which is what "where did the model see COVID" means.
# 6. Yes: the tag is outside the lungs, so a model that never saw a lung can still read it, and its test
#    AUC stays high. This is Maguolo & Nanni's argument: when a classifier scores well on images without
#    lungs, the dataset, not the disease, is being learned, and the test protocol is not fair.
# </details>
#
# ## References
# - Roberts, M. et al. (2021). Common pitfalls and recommendations for using machine learning to
#   detect and prognosticate for COVID-19 using chest radiographs and CT scans. *Nature Machine
#   Intelligence* 3, 199-217. 62 studies reviewed; none of the models was of potential clinical
#   use. https://doi.org/10.1038/s42256-021-00307-0
# - DeGrave, A. J., Janizek, J. D. & Lee, S.-I. (2021). AI for radiographic COVID-19 detection
#   selects shortcuts over signal. *Nature Machine Intelligence* 3, 610-619 (laterality markers,
#   text and borders). https://doi.org/10.1038/s42256-021-00338-7
# - Maguolo, G. & Nanni, L. (2021). A critic evaluation of methods for COVID-19 automatic detection from
#   X-ray images. *Information Fusion* 76, 1-7 (classifiers that work without the lungs).
#   https://doi.org/10.1016/j.inffus.2021.04.008
# - Selvaraju, R. R. et al. (2017). Grad-CAM: visual explanations from deep networks via
#   gradient-based localization. *ICCV*. https://arxiv.org/abs/1610.02391
# - Wang, L., Lin, Z. Q. & Wong, A. (2020). COVID-Net: a tailored deep convolutional neural network design for
#   detection of COVID-19 cases from chest X-ray images. *Scientific Reports* 10, 19549 (COVIDx: normal,
#   pneumonia, COVID-19; per-class sensitivity and PPV). https://doi.org/10.1038/s41598-020-76550-z
# - Wynants, L. et al. (2020). Prediction models for diagnosis and prognosis of covid-19:
#   systematic review and critical appraisal. *BMJ* 369, m1328. https://doi.org/10.1136/bmj.m1328
# - Zech, J. R. et al. (2018). Variable generalization performance of a deep learning model to
#   detect pneumonia in chest radiographs. *PLOS Medicine* 15(11), e1002683 (models that recognise
#   the hospital). https://doi.org/10.1371/journal.pmed.1002683
# - Adebayo, J. et al. (2018). Sanity checks for saliency maps. *NeurIPS*. https://arxiv.org/abs/1810.03292
# - Actualmed COVID-19 chest X-ray dataset (COVID-Net team).
#   https://github.com/agchung/Actualmed-COVID-chestxray-dataset
# - Cohen, J. P. et al. (2020). COVID-19 image data collection. https://github.com/ieee8023/covid-chestxray-dataset
# - Zhao, J. et al. (2020). COVID-CT-Dataset. https://github.com/UCSD-AI4H/COVID-CT
