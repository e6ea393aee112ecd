# %% [markdown]
# # 04 · A hybrid: VGG16 features + XGBoost
#
# **What you will learn**
# - how to use a pretrained CNN (VGG16 on ImageNet) as a **fixed feature extractor** and train a
#   different classifier on its features: gradient-boosted trees (XGBoost), the "hybrid" of several
#   COVID-19 papers;
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
if SMOKE:  # a few hundred tiny images; a higher learning rate needs fewer trees
    IMG_SIZE, N_ESTIMATORS, LEARNING_RATE, EARLY_STOPPING_ROUNDS, N_JOBS = min(IMG_SIZE, 64), 300, 0.1, 20, 1

# %% [markdown]
# ## 1. The data
#
# The same dataset and patient-level split as notebooks 02 and 03, so the results compare. The
# images are decoded once per size and cached.

# %%
import pandas as pd

from helpers import data, evaluation, images, plots
from helpers.models import hybrid
from helpers.runs import read_runs

dataset = data.course_dataset(DATASET, smoke=SMOKE, strict=STRICT, max_per_class=MAX_PER_CLASS)
image_set = images.load_images(dataset, IMG_SIZE)
if dataset.synthetic:
    print(data.SYNTHETIC_BANNER)

# %% [markdown]
# ## 2. VGG16 as a feature extractor
#
# In notebook 03 a new head was trained *inside* the network. Here the network is cut after its
# last convolution block and never trained at all: every image goes through it once, and what
# comes out is a table, one row per image. Any classifier can then learn from that table.
#
# Two ways to turn VGG16's last feature map (7 x 7 positions x 512 channels at 224 px) into a row:
#
# - **`avg`**: average each channel over the 7 x 7 positions: **512** numbers. Where in the image
#   something was seen is lost; that it was seen is kept.
# - **`flatten`**: keep every position: **25,088** numbers. Position is kept, at the price of 49
#   times more columns, most of them near zero.
#
# `hybrid.extract_features` feeds the images through a `tf.data` pipeline (batched, prefetched)
# into VGG16 with its own preprocessing (`caffe`: BGR minus the ImageNet mean) inside the model,
# and caches the result. The cache file's name holds the dataset's key, the backbone, the size,
# the pooling and the weights, so changing any of them extracts again; a stale cache is never read.
# If the ImageNet weights cannot be downloaded, the extractor starts from random weights with a
# loud warning (unless `STRICT`), and every table below says `random`.

# %%
features = {
    pooling: hybrid.extract_features(dataset, image_set, weights=WEIGHTS, pooling=pooling,
                                     batch_size=BATCH_SIZE, strict=STRICT)
    for pooling in POOLINGS
}
pd.DataFrame([{"pooling": p, "images": f.X.shape[0], "features": f.X.shape[1], "MB": round(f.X.nbytes / 1e6, 1),
               "extraction s": f.seconds, "from cache": f.from_cache, "weights": f.weights or "random"}
              for p, f in features.items()]).set_index("pooling")

# %% [markdown]
# Run the same call again: this time the features come from the cache in a fraction of a second
# (it says `cache hit`). Extraction is the expensive, GPU-friendly part; it is done once, and the
# classifiers below can be re-trained as often as you like.

# %%
features = {pooling: hybrid.extract_features(dataset, image_set, weights=WEIGHTS, pooling=pooling,
                                             batch_size=BATCH_SIZE, strict=STRICT) for pooling in POOLINGS}

# %% [markdown]
# ## 3. XGBoost on the features
#
# `hybrid.train_xgboost` fits gradient-boosted trees (`tree_method="hist"`; on the GPU when one is
# present, `device="cuda"`) on the **train** split and watches the AUC on the **validation**
# split after every tree: when it has not improved for `EARLY_STOPPING_ROUNDS` trees, training stops and the best
# round is kept (early stopping). `scale_pos_weight` (NORMAL / COVID in train) balances the
# classes. The test split is not used for any of this.

# %%
NAMES = {"avg": "vgg16-xgboost", "flatten": "vgg16-xgboost-flat"}
xgb_models, results = {}, []
for pooling, feats in features.items():
    model, info = hybrid.train_xgboost(feats, n_estimators=N_ESTIMATORS, learning_rate=LEARNING_RATE,
                                       early_stopping_rounds=EARLY_STOPPING_ROUNDS, n_jobs=N_JOBS)
    xgb_models[NAMES[pooling]] = model
    results.append(hybrid.save_hybrid(NAMES[pooling], model, feats, dataset, info=info))
    print(f"{NAMES[pooling]}: {info['n_features']} features, {info['rounds']} trees grown, best round "
          f"{info['best_iteration'] + 1} (val AUC {info['val_auc']:.3f}), {info['seconds']:.1f} s on {info['device']}")

# %% [markdown]
# What early stopping saw: the validation AUC after each tree, and the round that was kept
# (dotted). A curve that rises and flattens is normal; trees after the dotted line were grown
# but are not used. On small validation sets the curve is jagged: one image more or less right
# moves the AUC by a few hundredths.

# %%
plots.plot_boosting(xgb_models, synthetic=dataset.synthetic);

# %% [markdown]
# ## 4. The baseline on the same features: logistic regression
#
# Is a forest of trees needed at all? A logistic regression on the same pooled features (each
# feature standardized, `C` chosen on the validation AUC, balanced class weights) is the fair
# comparison: if it does as well, the "hybrid" owes its score to VGG16's features, not to XGBoost.

# %%
logistic, info = hybrid.train_logistic(features["avg"])
results.append(hybrid.save_hybrid("vgg16-logreg", logistic, features["avg"], dataset, info=info))
print(f"vgg16-logreg: C = {info['C']} chosen on validation, {info['seconds']:.1f} s")
pd.Series(info["val_auc_by_C"], name="validation AUC").rename_axis("C").to_frame().round(3)

# %% [markdown]
# ## 5. Results
#
# One row per model on the **test** split, at the threshold chosen on validation. Extraction and
# training times are reported separately: extraction is paid once per dataset and size (and is
# shared by all models on the same features), training once per model.

# %%
table = hybrid.results_table(results)
table.round(3)

# %% [markdown]
# The same models with patient-bootstrap 95% intervals, next to the majority-class baseline and,
# if you ran them, the CNN of notebook 02 and the fine-tuned VGG16 of notebook 03. Overlapping
# intervals mean the test set cannot tell the models apart.

# %%
runs = [run for run in read_runs(dataset=dataset.name)
        if run.model in (*NAMES.values(), "vgg16-logreg", "cnn", "vgg16")]
evaluation.format_comparison(evaluation.comparison_table(runs, n_boot=200 if SMOKE else 1000))

# %% [markdown]
# **Where the time goes.** Grey is feature extraction, orange the classifier's training.

# %%
plots.plot_time_breakdown(table, synthetic=dataset.synthetic);

# %% [markdown]
# **What to read here.** With 49 times more columns, the flattened fit takes far longer: XGBoost's
# `hist` method builds a histogram per feature per tree, so its cost grows with images x
# features. Measured on 2 CPU cores, XGBoost on 1000 x 25,088 flattened features took about
# 250 s, on 1000 x 512 pooled features about 4 s (`benchmarks/bench_hybrid.py` measures it on
# your machine). On a GPU (`device="cuda"`) the gap shrinks a lot. Whether the 60-fold cost buys
# anything shows in the AUC column: usually little or nothing, because most of the 25,088 values
# are near zero and the few hundred training images cannot support that many columns. And the
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
# (the lungs fill the middle of the slice, left and right); the COVID-CT dataset is small (a few
# hundred slices), which suits a fixed extractor with a simple classifier on top; and slices of
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
# 1. Train a logistic regression on the flattened features (`hybrid.train_logistic(features["flatten"])`).
#    How does it compare with the pooled one, and with XGBoost on the flattened features?
# 2. Change `IMG_SIZE` to 128. How many flattened features are there now, and what happens to the
#    extraction and training times and to the AUC?
# 3. Re-train the pooled XGBoost with `seed=1` and compare the top-15 feature lists. What does
#    that tell you about reading importance?
# 4. Set `WEIGHTS = None` (random VGG16 weights) and compare with ImageNet weights. What does the
#    difference say about transfer learning?
#
# <details><summary>Solutions</summary>
#
# 1. With standardized features and `C` chosen on validation it usually matches or beats its pooled
#    version and the flattened XGBoost, at a fraction of the time: strong regularisation copes
#    with many columns better than trees on few images.
# 2. (128 / 32)^2 x 512 = 8,192. Extraction is about three times faster (cost grows with the
#    pixels), the flattened XGBoost fit about three times faster (cost grows with the columns);
#    the AUC usually drops a little, as fine detail is lost.
# 3. The top predictions hardly change, but the list reorders and channels appear or disappear:
#    among correlated features the choice is arbitrary. Read importance as "this kind of
#    information is used", never as "this channel is the sign".
# 4. On real images, random features do much worse than ImageNet features: the value of the
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
