# %% [markdown]
# # 04 · A hybrid: VGG16 features + XGBoost
#
# **What you will learn**
# - how to use a pretrained CNN (VGG16 on ImageNet) as a **fixed feature extractor** and train a
#   different classifier on its features: gradient-boosted trees (XGBoost), the "hybrid" of several
#   COVID-19 papers, both written out (`include_top=False` and a pooling layer, `predict`, then an
#   `XGBClassifier` with early stopping on the validation split);
# - **pooled** (512 numbers per image) versus **flattened** (7 x 7 x 512 = 25,088 numbers at 224 px)
#   features: what the extra numbers buy and what they cost;
# - why a hybrid must be compared with the simplest model on the **same** features, a logistic
#   regression, before its trees mean anything;
# - where the time goes (extraction once, cached; training many times), and what feature
#   importance can and cannot tell you.
#
# **Run time:** about 5 min on a Colab GPU, about 20 min on a laptop CPU at full size (the
# flattened XGBoost fit dominates), about 4 min with the `cpu` profile, under a minute with
# `SMOKE=True`.

# %% tags=["parameters"]
DATASET = "covid19-radiography"  # X-ray; "covid-ct" for CT; "synthetic" / "synthetic-ct" offline
TASK = "covid-vs-normal"  # "covid-vs-pneumonia": COVID-19 vs other pneumonias; "three-class": normal/pneumonia/COVID-19
SMOKE = False  # True: tiny images and data, about a minute on a CPU
STRICT = False  # True: fail instead of falling back to synthetic data / random weights
MAX_PER_CLASS = None  # course-wide, as in 02, 03 and 05 (one test set); "flatten" holds images x 25,088 floats: GBs in full
IMG_SIZE = 224  # VGG16's native size; the flattened map is (IMG_SIZE / 32)^2 x 512 numbers
BATCH_SIZE = 32
WEIGHTS = "imagenet"  # None: random initialisation (what happens offline, loudly)
POOLINGS = ["avg", "flatten"]
N_ESTIMATORS = 2000  # an upper bound: early stopping on validation decides
LEARNING_RATE = 0.05
EARLY_STOPPING_ROUNDS = 50  # stop when validation AUC has not improved for this many trees
N_JOBS = None  # XGBoost's CPU threads (None: all); 1 is often faster for small tables on a busy CPU

# %%
if SMOKE:  # tiny images, and few of them; a higher learning rate needs fewer trees
    IMG_SIZE, N_ESTIMATORS, LEARNING_RATE, EARLY_STOPPING_ROUNDS, N_JOBS = min(IMG_SIZE, 64), 300, 0.1, 20, 1

# %% [markdown]
# ## 1. The data
#
# The same dataset, task and patient-level split as notebooks 02 and 03, so the results compare.
# The images are decoded once per size and cached.

# %%
import time

import keras
import numpy as np
import pandas as pd
import xgboost
from keras import layers
from sklearn.utils.class_weight import compute_sample_weight

from helpers import data, evaluation, images, plots
from helpers.models import Preprocess, hybrid, with_weights_fallback
from helpers.models.pipeline import make_pipeline
from helpers.runs import read_runs

dataset = data.course_dataset(DATASET, smoke=SMOKE, strict=STRICT, max_per_class=MAX_PER_CLASS, task=TASK)
image_set = images.load_images(dataset, IMG_SIZE)
classes = dataset.classes if len(dataset.classes) > 2 else None  # three classes: class indices as labels
if dataset.synthetic:
    print(data.SYNTHETIC_BANNER)
print(f"task {dataset.task}: classes {', '.join(dataset.classes)}")

# %% [markdown]
# ## 2. VGG16 as a feature extractor
#
# In notebook 03 a new head was trained *inside* the network. Here the network is cut after its
# last convolution block and never trained at all: every image goes through it once, and what
# comes out is a table, one row per image. Any classifier can then learn from that table.
#
# Two ways to turn VGG16's last feature map (`IMG_SIZE / 32` x `IMG_SIZE / 32` positions x 512
# channels: 7 x 7 x 512 at 224 px) into a row:
#
# - **`avg`**: average each channel over the positions: **512** numbers. Where in the image
#   something was seen is lost; that it was seen is kept.
# - **`flatten`**: keep every position: 7 x 7 x 512 = **25,088** numbers at 224 px. Position is
#   kept, at the price of 49 times more columns, most of them near zero.
#
# The extractor, written out: VGG16 without its ImageNet head (`include_top=False`), its own
# preprocessing in front (`caffe`: BGR minus the ImageNet mean), the pooling behind. It is built in
# `float32` even on a GPU, so that the features do not depend on the device. If the ImageNet
# weights cannot be downloaded, `with_weights_fallback` builds it with random weights, with a loud
# warning (unless `STRICT`).

# %% tags=["lesson-features"]
def make_extractor(weights, pooling="avg"):
    inputs = keras.Input((IMG_SIZE, IMG_SIZE, 3), name="image")
    x = Preprocess("caffe", name="preprocess")(inputs)
    base = keras.applications.VGG16(include_top=False, weights=weights, input_tensor=x)
    pool = layers.GlobalAveragePooling2D if pooling == "avg" else layers.Flatten
    return keras.Model(inputs, pool(name="features")(base.output), name="vgg16_features")


keras.mixed_precision.set_global_policy("float32")  # the extractor computes in float32, also on a GPU
extractor, used = with_weights_fallback(make_extractor, WEIGHTS, name="vgg16", strict=STRICT)
keras.mixed_precision.set_global_policy("mixed_float16" if ENV.mixed_precision else "float32")  # as before
extractor.trainable = False
print(f"VGG16 extractor ({used or 'random'} weights): {IMG_SIZE}px in, "
      f"{extractor.get_layer('block5_pool').output.shape[1:]} feature map, {extractor.output.shape[1]} features out")

# %% [markdown]
# Then one pass over the decoded images: `make_pipeline` batches them (grey repeated on three
# channels, prefetched), and `predict` turns each batch into rows of the table. Nothing is
# trained: this is the expensive, GPU-friendly part, paid once.

# %%
started = time.perf_counter()
X = extractor.predict(make_pipeline(image_set.images, batch_size=BATCH_SIZE), verbose=0)
print(f"{X.shape[0]} images -> a {X.shape[0]} x {X.shape[1]} table in {time.perf_counter() - started:.1f} s")

# %% [markdown]
# `hybrid.extract_features` does exactly this, for both poolings, and **caches** the tables. The
# cache file's name holds the dataset's key, the backbone, the size, the pooling and the weights,
# so changing any of them extracts again; a stale cache is never read. (Without ImageNet weights
# it also draws the random filters from a fixed seed, so that the upload demo can rebuild the same
# extractor; our random filters above are other random filters, and only ImageNet features can
# agree.) From here on the notebook uses its tables.

# %%
features = {
    pooling: hybrid.extract_features(dataset, image_set, weights=WEIGHTS, pooling=pooling,
                                     batch_size=BATCH_SIZE, strict=STRICT)
    for pooling in POOLINGS
}
if "avg" in features and used:
    print(f"largest difference between our table and the helper's: {np.abs(X - features['avg'].X).max():.1e}")
pd.DataFrame([{"pooling": p, "images": f.X.shape[0], "features": f.X.shape[1], "MB": round(f.X.nbytes / 1e6, 1),
               "extraction s": f.seconds, "from cache": f.from_cache, "weights": f.weights or "random"}
              for p, f in features.items()]).set_index("pooling")

# %% [markdown]
# Run the same call again: this time the features come from the cache in a fraction of a second
# (it says `cache hit`), and the classifiers below can be re-trained as often as you like.

# %%
features = {pooling: hybrid.extract_features(dataset, image_set, weights=WEIGHTS, pooling=pooling,
                                             batch_size=BATCH_SIZE, strict=STRICT) for pooling in POOLINGS}

# %% [markdown]
# ## 3. XGBoost on the features
#
# Gradient-boosted trees, written out for the pooled features. `XGBClassifier` grows one small tree
# after another (`max_depth=4`), each correcting the errors of the ones before, with the `hist`
# method (on the GPU when there is one: `device="cuda"`). Three settings carry the lesson:
#
# - `eval_set=[(X_val, y_val)]` with `eval_metric="auc"`: after every tree, the AUC on the
#   **validation** split;
# - `early_stopping_rounds`: when that AUC has not improved for so many trees, training stops, and
#   predictions use the best round (`best_iteration`): **early stopping** on validation;
# - `scale_pos_weight` (NORMAL / COVID in train) balances the classes, as the class weights did for
#   the networks.
#
# With three classes (`TASK = "three-class"`) the booster grows one tree per class in every round
# and turns their scores into three probabilities (`objective="multi:softprob"`, a softmax);
# `sample_weight` balances the classes instead of `scale_pos_weight`, and early stopping watches
# the validation log loss (`eval_metric="mlogloss"`). The test split is not used for any of this.

# %% tags=["lesson-xgboost"]
X_train, y_train = features["avg"].split("train", classes)
X_val, y_val = features["avg"].split("val", classes)
if classes is None:  # two classes: 1 = COVID
    objective = {"eval_metric": "auc", "scale_pos_weight": (y_train == 0).sum() / (y_train == 1).sum()}
    weights = None
else:  # three classes: a softmax over one tree per class and round
    objective = {"objective": "multi:softprob", "num_class": len(classes), "eval_metric": "mlogloss"}
    weights = compute_sample_weight("balanced", y_train)
booster = xgboost.XGBClassifier(
    n_estimators=N_ESTIMATORS, learning_rate=LEARNING_RATE, max_depth=4, tree_method="hist",
    device=hybrid.default_device(), early_stopping_rounds=EARLY_STOPPING_ROUNDS, random_state=42, n_jobs=N_JOBS,
    **objective,
)
started = time.perf_counter()
booster.fit(X_train, y_train, sample_weight=weights, eval_set=[(X_val, y_val)], verbose=False)
seconds = time.perf_counter() - started
rounds = booster.get_booster().num_boosted_rounds()
print(f"{rounds} boosting rounds in {seconds:.1f} s; best round {booster.best_iteration + 1}, "
      f"validation {'AUC' if classes is None else 'log loss'} {booster.best_score:.3f}")

# %% [markdown]
# `hybrid.train_xgboost` is the same fit (a test of the course keeps the two equal); it trains the
# flattened model below. `save_hybrid` writes each model with its validation and test predictions,
# the threshold chosen on validation, and `features.json` (what rebuilds the extractor), to
# `outputs/<dataset>/<model>/`.

# %%
NAMES = {"avg": "vgg16-xgboost", "flatten": "vgg16-xgboost-flat"}
xgb_models, results = {"vgg16-xgboost": booster}, []
watched = f"val_{objective['eval_metric']}"  # val_auc, or val_mlogloss for three classes
info = {"seconds": round(seconds, 2), "best_iteration": int(booster.best_iteration), watched: booster.best_score,
        "device": hybrid.default_device(), "n_features": features["avg"].n_features, "rounds": rounds}
results.append(hybrid.save_hybrid("vgg16-xgboost", booster, features["avg"], dataset, info=info))
for pooling in [p for p in POOLINGS if p != "avg"]:
    model, info = hybrid.train_xgboost(features[pooling], n_estimators=N_ESTIMATORS, learning_rate=LEARNING_RATE,
                                       early_stopping_rounds=EARLY_STOPPING_ROUNDS, n_jobs=N_JOBS, classes=classes)
    xgb_models[NAMES[pooling]] = model
    results.append(hybrid.save_hybrid(NAMES[pooling], model, features[pooling], dataset, info=info))
    print(f"{NAMES[pooling]}: {info['n_features']} features, {info['rounds']} boosting rounds, best round "
          f"{info['best_iteration'] + 1} ({watched} {info[watched]:.3f}), {info['seconds']:.1f} s on {info['device']}")

# %% [markdown]
# What early stopping saw: the validation AUC (three classes: log loss, lower is better) after each
# round, and the round that was kept
# (dotted). A curve that rises and flattens is normal; trees after the dotted line were grown
# but are not used. On small validation sets the curve is jagged: one image more or less right
# moves the AUC by a visible step.

# %%
plots.plot_boosting(xgb_models, synthetic=dataset.synthetic);

# %% [markdown]
# ## 4. The baseline on the same features: logistic regression
#
# Is a forest of trees needed at all? A logistic regression on the same pooled features (each
# feature standardized, `C` chosen on the validation AUC, balanced class weights) is the fair
# comparison: if it does as well, the "hybrid" owes its score to VGG16's features, not to XGBoost.
# With three classes it is a multinomial (softmax) regression, and `C` is chosen on the macro
# one-vs-rest AUC of the three classes.

# %%
logistic, info = hybrid.train_logistic(features["avg"], classes=classes)
results.append(hybrid.save_hybrid("vgg16-logreg", logistic, features["avg"], dataset, info=info))
print(f"vgg16-logreg: C = {info['C']} chosen on validation, {info['seconds']:.1f} s")
pd.Series(info["val_auc_by_C"], name="validation AUC" if classes is None else "validation macro AUC (3 classes)"
          ).rename_axis("C").to_frame().round(3)

# %% [markdown]
# ## 5. Results
#
# One row per model on the **test** split, at the threshold chosen on validation (with three
# classes: COVID against the rest, NORMAL and PNEUMONIA together). Extraction and
# training times are reported separately: extraction is paid once per dataset and size (and is
# shared by all models on the same features), training once per model.

# %%
table = hybrid.results_table(results)
if classes is not None:  # the three classes' own scores beside COVID against the rest
    table["macro AUC (3 classes)"] = [m["multiclass"]["test"]["macro_auc"] for m in results]
    table["accuracy (3 classes)"] = [m["multiclass"]["test"]["accuracy"] for m in results]
table.round(3)

# %% [markdown]
# The ROC curves of the hybrids on the test split (dots: the thresholds chosen on validation) and
# their confusion matrices at those thresholds:

# %%
hybrid_runs = [run for run in read_runs(dataset=dataset.name, task=TASK) if run.model in table.index]
if classes is not None:
    print("three classes: the curves and matrices below are COVID against the rest (NORMAL and PNEUMONIA together)")
plots.plot_roc_pr(hybrid_runs);
plots.plot_confusion_matrices(hybrid_runs);

# %% [markdown]
# The same models with patient-bootstrap 95% intervals, next to the majority-class baseline and,
# if you ran them, the CNN of notebook 02 and the fine-tuned VGG16 of notebook 03. Overlapping
# intervals mean the test set cannot tell the models apart.

# %%
runs = [run for run in read_runs(dataset=dataset.name, task=TASK)
        if run.model in (*NAMES.values(), "vgg16-logreg", "cnn", "vgg16")]
evaluation.format_comparison(evaluation.comparison_table(runs, n_boot=200 if SMOKE else 1000))

# %% [markdown]
# **Where the time goes.** Grey is feature extraction, orange the classifier's training.

# %%
plots.plot_time_breakdown(table, synthetic=dataset.synthetic);
if {"vgg16-xgboost", "vgg16-xgboost-flat"} <= set(table.index):
    pooled, flat = table.loc["vgg16-xgboost"], table.loc["vgg16-xgboost-flat"]
    print(f"XGBoost on {pooled['n_features']} pooled features: {pooled['training s']:.1f} s; on "
          f"{flat['n_features']} flattened features: {flat['training s']:.1f} s, with the same "
          f"{len(image_set.manifest)} images ({(image_set.manifest['split'] == 'train').sum()} of them in train)")

# %% [markdown]
# **What to read here.** With 49 times more columns, the flattened fit takes longer (the line
# printed above gives this run's times): XGBoost's `hist` method builds a histogram per feature per
# tree, so its cost grows with images x features. On small tables (the SMOKE run) fixed costs hide
# the difference; at full size it dominates the notebook (`benchmarks/bench_hybrid.py` measures it
# on your machine). On a GPU (`device="cuda"`) the gap shrinks a lot. Whether the extra cost buys
# anything shows in the AUC column: usually little or nothing, because most of the flattened values
# are near zero and a training split of this size cannot support that many columns. And the
# logistic regression row is the one to beat: on good pretrained features a linear model is often
# as good as the trees, and it trains in seconds.
#
# ## 6. Feature importance, and what it cannot tell
#
# XGBoost records how much each feature improved the fit where the trees split on it ("gain").
# Below, the top features of the pooled model, as shares of the total.

# %%
plots.plot_feature_importance(xgb_models["vgg16-xgboost"], features["avg"], synthetic=dataset.synthetic);

# %% [markdown]
# **What it can tell:** which of VGG16's 512 channels the trees leaned on, and how concentrated the
# model is (a few channels, or many). **What it cannot tell:**
#
# - **What a channel means.** "ch 137" is a pattern detector learned on ImageNet photos; it has no
#   radiological name. Importance is not an explanation of the disease.
# - **Which features matter, among correlated ones.** VGG16's channels are strongly correlated;
#   the trees pick one of several near-equivalent channels, more or less by chance. Another seed,
#   or a few images more, reorders the list while the predictions barely change.
# - **Whether a feature is a real sign or a shortcut.** A channel that fires on a hospital's text
#   marker or on the patient's age is as "important" as one that fires on ground-glass opacities
#   (notebook 05 shows how to look for shortcuts).
# - **Generalisation.** Gain is measured on the training data; an over-fitted split is important
#   too.
#
# The flattened features keep the position, so their importance can be summed per cell of the
# 7 x 7 grid and laid over an image: this shows *where* the trees look (not *what* they see). On
# chest X-rays, importance on the lungs is reassuring; importance in a corner, at the image
# border or on a marker is a warning sign.

# %%
if "flatten" in features:
    example = image_set.images[(image_set.manifest["label"] == "COVID").to_numpy()][0]
    plots.plot_importance_map(xgb_models["vgg16-xgboost-flat"], features["flatten"], image=example,
                              synthetic=dataset.synthetic);

# %% [markdown]
# **CT.** Everything above works unchanged with `DATASET = "covid-ct"` (or `"synthetic-ct"`
# offline). What differs: the images are axial slices, so the grid cells map to other anatomy
# (the lungs fill the middle of the slice, left and right); the COVID-CT dataset is small, which
# suits a fixed extractor with a simple classifier on top; and slices of
# one patient are not independent, which is why the split and the confidence intervals group
# them by patient.
#
# ## Key takeaways
# - A frozen CNN turns images into a table; any classifier can learn from it. Extract once, cache,
#   train many times.
# - Pooled features (512) are usually as good as flattened ones (25,088) and far cheaper; the
#   flattened fit's time grows with images x features.
# - Always put a logistic regression on the same features next to the hybrid: the features, not
#   the trees, usually carry the result.
# - Feature importance ranks columns, not medical findings; correlated features make the ranking
#   unstable, and a shortcut can be "important" too.
#
# ## Exercises
# Compare settings by their **validation** AUC (`booster.best_score`, the `val_auc` of each
# `info`, the validation column of the logistic regression's table): the test split is measured
# once, for the record, and choosing a setting by it makes the test score optimistic.
#
# 1. Train a logistic regression on the flattened features (`hybrid.train_logistic(features["flatten"])`).
#    How does its validation AUC compare with the pooled one's, and with XGBoost on the flattened
#    features?
# 2. Change `IMG_SIZE` to 128. How many flattened features are there now, and what happens to the
#    extraction and training times and to the validation AUC?
# 3. In the `XGBClassifier` cell, set `random_state=1` and compare the top-15 feature lists. What
#    does that tell you about reading importance?
# 4. In the same cell, try `max_depth=2` and `max_depth=8`, and `EARLY_STOPPING_ROUNDS = 5`. What
#    happens to the number of trees kept and to the validation AUC?
# 5. Set `WEIGHTS = None` (random VGG16 weights) and compare with ImageNet weights. What does the
#    difference say about transfer learning?
#
# <details><summary>Solutions</summary>
#
# 1. With standardized features and `C` chosen on validation it usually matches or beats its pooled
#    version and the flattened XGBoost, at a fraction of the time: strong regularisation copes
#    with many columns better than trees on few images.
# 2. (128 / 32)^2 x 512 = 8,192. Extraction gets faster (its cost grows with the pixels, here by
#    about (224 / 128)^2), and so does the flattened XGBoost fit (its cost grows with the columns);
#    the validation AUC usually drops a little, as fine detail is lost.
# 3. The top predictions hardly change, but the list reorders and channels appear or disappear:
#    among correlated features the choice is arbitrary. Read importance as "this kind of
#    information is used", never as "this channel is the sign".
# 4. Shallow trees need more rounds to reach the same validation AUC; deep trees fit the training
#    split faster and stop earlier, and on small data they over-fit. A very short patience stops
#    at the first plateau, often too early: the kept round and the validation AUC both drop.
# 5. On real images, random features do much worse than ImageNet features: the value of the
#    hybrid is in the pretrained filters. (On the synthetic cartoons even random filters separate
#    the classes, because the opacities change the image statistics so plainly.)
# </details>
#
# ## References
# - Simonyan & Zisserman (2015), Very Deep Convolutional Networks for Large-Scale Image Recognition
#   (VGG16). https://arxiv.org/abs/1409.1556
# - Chen & Guestrin (2016), XGBoost: A Scalable Tree Boosting System. https://arxiv.org/abs/1603.02754
# - XGBoost documentation: GPU support and the `hist` method. https://xgboost.readthedocs.io/
# - Razavian et al. (2014), CNN Features off-the-shelf: an Astounding Baseline for Recognition.
#   https://arxiv.org/abs/1403.6382
# - Strobl et al. (2007), Bias in random forest variable importance measures.
#   https://doi.org/10.1186/1471-2105-8-25
# - COVID-19 Radiography Database (Kaggle). https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database
# - COVID-CT (UCSD-AI4H). https://github.com/UCSD-AI4H/COVID-CT
