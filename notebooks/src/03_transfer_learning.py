# %% [markdown]
# # 03 · Transfer learning with five ImageNet backbones
#
# **What you will learn**
# - how to reuse a network trained on ImageNet (VGG16, ResNet50, InceptionV3, Xception,
#   DenseNet121) for chest images, written out in Keras: **feature extraction** with a frozen
#   backbone (`trainable = False`), then **fine-tuning** of its top layers with a much lower learning
#   rate, batch normalization kept in inference mode, and phase 2 kept only if it helps on validation;
# - why each backbone needs its own `preprocess_input` and input size (299 px for InceptionV3 and
#   Xception), and how the course keeps that inside the saved model;
# - how to compare backbones fairly: same patient-level split, same threshold rule, same test set,
#   with training time and size next to the scores.
#
# **Run time:** about 20 min on a Colab GPU for all five backbones, about 15 min on a laptop CPU
# with the `cpu` profile (one or two backbones, small images), about a minute with `SMOKE=True`.

# %% tags=["parameters"]
DATASET = "covid19-radiography"  # X-ray; "covid-ct" for CT; "synthetic" / "synthetic-ct" offline
TASK = "covid-vs-normal"  # "covid-vs-pneumonia": COVID-19 vs other pneumonias; "three-class": normal/pneumonia/COVID-19
SMOKE = False  # True: one backbone, tiny images and epochs
STRICT = False  # True: fail instead of falling back to synthetic data / random weights
MAX_PER_CLASS = None  # cap images per class (whole patients)
BACKBONES = ["vgg16", "resnet50", "inceptionv3", "xception", "densenet121"]
WEIGHTS = "imagenet"  # None: random initialisation (what happens offline, loudly)
IMG_SIZE = None  # None: each backbone's native size (224, or 299 for InceptionV3 and Xception)
EPOCHS = 10  # phase 1: frozen backbone
FINE_TUNE_EPOCHS = 5  # phase 2: top of the backbone unfrozen
FINE_TUNE_FRACTION = 0.2
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
FINE_TUNE_LEARNING_RATE = 1e-5

# %%
if SMOKE:
    BACKBONES, IMG_SIZE, EPOCHS, FINE_TUNE_EPOCHS = BACKBONES[:1], min(IMG_SIZE or 48, 48), 2, 1

# %% [markdown]
# ## 1. The data
#
# The same dataset, task and patient-level split as notebook 02, so the models compare
# fairly. Images are decoded once per size and cached.

# %%
import time

import keras
import numpy as np
import pandas as pd
from keras import layers

from helpers import data, evaluation, images, paths, plots
from helpers.models import BACKBONES as REGISTRY
from helpers.models import Preprocess, augmentation, train, with_weights_fallback
from helpers.models.pipeline import labels_of, split_pipeline
from helpers.runs import load_history, read_runs, run_name

dataset = data.course_dataset(DATASET, smoke=SMOKE, strict=STRICT, max_per_class=MAX_PER_CLASS, task=TASK)

# %% [markdown]
# ## 2. The backbones
#
# Each backbone was trained on ImageNet with its own input convention: VGG16 and ResNet50 expect
# BGR images minus the ImageNet mean ("caffe"), InceptionV3 and Xception values in [-1, 1] ("tf"),
# DenseNet121 standardised RGB ("torch"). Feeding the wrong one silently costs accuracy, so the
# course puts the right rule in a `Preprocess` layer inside each model (it computes what each
# backbone's `keras.applications.<module>.preprocess_input` does, and is saved with the model). The
# last convolution is where Grad-CAM will look in notebook 05.

# %%
pd.DataFrame(
    [{"backbone": name, "native input size": spec.size, "size used here": IMG_SIZE or spec.size,
      "preprocessing": spec.mode, "Grad-CAM layer": spec.last_conv}
     for name, spec in REGISTRY.items() if name in BACKBONES]
)

# %% [markdown]
# ## 3. Transfer learning, written out, for the first backbone
#
# The recipe has two phases:
#
# 1. **Feature extraction.** Take the backbone's convolutional part (`include_top=False`: without
#    its 1000-class ImageNet head), freeze it (`trainable = False`), put a new head on top (global
#    average pooling, dropout, one sigmoid unit; for three classes a 3-unit softmax, as in notebook 02)
#    and train only that head, at a normal learning rate.
# 2. **Fine-tuning.** Unfreeze the top part of the backbone and continue with a learning rate
#    100 times lower, so that the pretrained features are adjusted, not destroyed.
#
# First the data of this backbone's input size, the two pipelines and the class weights, as in
# notebook 02.

# %%
name = BACKBONES[0]
spec = REGISTRY[name]
size = IMG_SIZE or spec.size
image_set = images.load_images(dataset, size)
n_classes = len(dataset.classes)  # 2: one sigmoid unit; 3 (NORMAL, PNEUMONIA, COVID): a 3-unit softmax
classes = dataset.classes if n_classes > 2 else None  # three classes: class indices as labels
train_data = split_pipeline(image_set, "train", batch_size=BATCH_SIZE, training=True, classes=classes)
val_data = split_pipeline(image_set, "val", batch_size=BATCH_SIZE, classes=classes)
class_weight = train.class_weights(labels_of(image_set, "train", classes), n_classes)
print(f"{name}: {spec.application} at {size}px, preprocessing {spec.mode!r}, weights {WEIGHTS}; "
      f"task {dataset.task}: classes {', '.join(dataset.classes)}")

# %% [markdown]
# The model. `input_tensor=x` builds the backbone *on* our preprocessed input, so its layers sit
# directly in our model (Grad-CAM can then find its last convolution by name). If the ImageNet
# weights cannot be downloaded, `with_weights_fallback` builds the model with random weights
# instead and warns loudly (unless `STRICT`); `used` says which weights were loaded.

# %% tags=["lesson-transfer"]
Application = getattr(keras.applications, spec.application)  # e.g. keras.applications.VGG16


def make_transfer_model(weights):
    inputs = keras.Input((size, size, 3), name="image")
    x = augmentation()(inputs)  # the augmentation layers of notebook 02
    x = Preprocess(spec.mode, name="preprocess")(x)  # this backbone's preprocess_input
    base = Application(include_top=False, weights=weights, input_tensor=x)
    x = layers.GlobalAveragePooling2D(name="gap")(base.output)
    x = layers.Dropout(0.3, name="dropout")(x)
    if n_classes == 2:  # one sigmoid unit: the probability of COVID
        outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    else:  # a softmax: one probability per class (in dataset.classes order)
        outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="probability")(x)
    return keras.Model(inputs, outputs, name=name), base


with ENV.strategy.scope():
    (model, base), used = with_weights_fallback(make_transfer_model, WEIGHTS, name=name, strict=STRICT)

base.trainable = False  # phase 1: the backbone's weights stay as ImageNet left them


def count_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


print(f"{model.count_params():,} parameters, {count_trainable(model):,} of them trainable (the head)")

# %% [markdown]
# Compile and fit, exactly as in notebook 02: Adam with a cosine-decaying learning rate, class
# weights, early stopping on the validation AUC (three classes: the validation loss) with the best
# weights restored. It is a function
# because phase 2 does it again, with another learning rate. **Compile after every change of
# `trainable`**: Keras fixes the list of weights to update when the model is compiled.

# %% tags=["lesson-fit"]
if n_classes == 2:
    loss, monitor, mode = "binary_crossentropy", "val_auc", "max"
else:
    loss, monitor, mode = "sparse_categorical_crossentropy", "val_loss", "min"


def compile_and_fit(model, learning_rate, epochs):
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * len(train_data)),
                                                      alpha=0.05)
    metrics = ([keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")] if n_classes == 2
               else [keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    with ENV.strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=metrics)
    stop = keras.callbacks.EarlyStopping(monitor, mode=mode, patience=5, restore_best_weights=True)
    started = time.perf_counter()
    result = model.fit(train_data, validation_data=val_data, epochs=epochs, class_weight=class_weight,
                       callbacks=[stop], shuffle=False, verbose=2)
    history = {key: [float(v) for v in values] for key, values in result.history.items()}
    return {**history, "seconds": [round(time.perf_counter() - started, 1)]}


def best_on_val(history):  # higher is better: the validation AUC, or minus the validation loss
    return max([v if mode == "max" else -v for v in history.get(monitor, [])], default=float("-inf"))


print(f"{name}: phase 1, frozen backbone; epochs: {EPOCHS}")
history = compile_and_fit(model, LEARNING_RATE, EPOCHS) if EPOCHS else {}
phase_one_score = best_on_val(history)
phase_one_weights = model.get_weights()
fine_tune_start = len(history.get("loss", []))

# %% [markdown]
# **Phase 2: fine-tuning.** Unfreeze the top `FINE_TUNE_FRACTION` of the backbone's layers.
# `base.layers` also lists the input, augmentation and preprocessing layers we put in front of it,
# so they are left out first. **Batch normalization layers stay frozen**: in Keras a frozen
# `BatchNormalization` layer also runs in *inference mode*, using the mean and variance it learned
# on ImageNet. Unfrozen, it would replace them with the statistics of a few small batches of chest
# images at every step, and undo much of what the backbone knows. Then recompile, with the low
# learning rate, and fit again.

# %% tags=["lesson-finetune"]
backbone = [layer for layer in base.layers if layer.name not in ("image", "augment", "preprocess")]
start = int(len(backbone) * (1 - FINE_TUNE_FRACTION))
for layer in backbone[start:]:
    if not isinstance(layer, layers.BatchNormalization):
        layer.trainable = True
print(f"{name}: phase 2, the top {len(backbone) - start} of {len(backbone)} backbone layers unfrozen "
      f"(batch norm excepted): {count_trainable(model):,} trainable parameters; epochs: {FINE_TUNE_EPOCHS}")
fine = compile_and_fit(model, FINE_TUNE_LEARNING_RATE, FINE_TUNE_EPOCHS) if FINE_TUNE_EPOCHS else {}
history = {key: history.get(key, []) + fine.get(key, []) for key in {*history, *fine}}

# %% [markdown]
# Did fine-tuning help? Only the **validation** AUC (three classes: the validation loss) may decide.
# Early stopping restored the best epoch *of phase 2*, which may still be worse than the end of
# phase 1; in that case we go back to the phase-1 weights (and freeze the backbone again, as it was
# when they were saved).

# %%
phase_two_score = best_on_val(fine)
kept = phase_two_score > phase_one_score
if not kept:
    base.trainable = False
    model.set_weights(phase_one_weights)
print(f"best validation {'AUC' if monitor == 'val_auc' else 'loss'}: phase 1 {abs(phase_one_score):.3f}, "
      f"phase 2 {abs(phase_two_score):.3f} -> " + ("fine-tuned weights kept" if kept else "phase-1 weights restored"))

metrics = train.evaluate_and_save(
    model, image_set, dataset, name=name, history=history, weights=used or "random",
    params={"epochs": EPOCHS, "fine_tune_epochs": FINE_TUNE_EPOCHS, "fine_tune_fraction": FINE_TUNE_FRACTION,
            "img_size": size, "batch_size": BATCH_SIZE, "fine_tune_start": fine_tune_start, "fine_tune_kept": kept,
            "trainable_parameters": count_trainable(model)})
print(train.summary_line(metrics))
if "multiclass" in metrics:
    print(f"the line above is COVID against the rest; the {n_classes} classes on test: accuracy "
          f"{metrics['multiclass']['test']['accuracy']:.3f}, macro one-vs-rest AUC "
          f"{metrics['multiclass']['test']['macro_auc']:.3f}")

# %% [markdown]
# The learning curves of both phases; the dashed line is where fine-tuning starts. The
# **training loss is class-weighted** (and measured with augmentation and dropout on), the
# **validation loss is not**, so the two are not on the same scale: compare their shapes. At the
# line, the validation curve should improve a little more, not collapse (if it collapses, the
# fine-tuning learning rate is too high).

# %%
plots.plot_phased_history(history, fine_tune_start, kept=kept, synthetic=dataset.synthetic,
                          title=f"{name} on {dataset.name}: feature extraction, then fine-tuning");

# %% [markdown]
# ## 4. The other backbones, through the helper
#
# `train.train_transfer` runs exactly the recipe above, with the same rule for keeping phase 2,
# for one backbone at a time (in the SMOKE run there are no other backbones, and this cell does
# nothing). Both phases select on the validation split; the test split is only predicted at the
# end. If the ImageNet weights cannot be downloaded the backbone starts from random weights, with a
# loud warning, and the report marks the run.

# %%
results = {name: metrics}
for other in BACKBONES[1:]:
    _, results[other] = train.train_transfer(
        other, dataset, img_size=IMG_SIZE, weights=WEIGHTS, epochs=EPOCHS, fine_tune_epochs=FINE_TUNE_EPOCHS,
        fine_tune_fraction=FINE_TUNE_FRACTION, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
        fine_tune_learning_rate=FINE_TUNE_LEARNING_RATE, strict=STRICT,
    )
    print(train.summary_line(results[other]))

# %% [markdown]
# ## 5. Results
#
# One row per backbone, measured on the **test** split at the threshold chosen on validation (with
# three classes: COVID against the rest, and the three classes' macro AUC beside it).
# Read AUC first (threshold-free), then sensitivity and specificity together, then the cost:
# training time and parameters. "fine-tuning kept" says whether phase 2 beat phase 1 on validation.

# %%
table = pd.DataFrame(
    [{"backbone": backbone_name, "weights": m["weights"] or "random (!)", "AUC": m["test"]["auc"],
      "sensitivity": m["test"]["sensitivity"], "specificity": m["test"]["specificity"],
      "val AUC": m["val"]["auc"], "fine-tuning kept": m["params"].get("fine_tune_kept"),
      **({"macro AUC (3 classes)": m["multiclass"]["test"]["macro_auc"]} if "multiclass" in m else {}),
      "train s": m["train_seconds"], "parameters (M)": m["n_parameters"] / 1e6,
      "trainable (M)": m["params"]["trainable_parameters"] / 1e6}
     for backbone_name, m in results.items()]
).set_index("backbone")
table.round(3)

# %% [markdown]
# ROC curves of every backbone on the test split (dots: the thresholds chosen on validation) and
# their confusion matrices at those thresholds:

# %%
runs = [run for run in read_runs(dataset=dataset.name, task=TASK) if run.model in results]
if n_classes > 2:
    print(f"{n_classes} classes: the curves and matrices below are COVID against the rest "
          f"({' and '.join(c for c in dataset.classes if c != 'COVID')} together)")
plots.plot_roc_pr(runs);
plots.plot_confusion_matrices(runs);

# %% [markdown]
# And the learning curves of the backbones trained by the helper (the first one is above):

# %%
for other in BACKBONES[1:]:
    plots.plot_phased_history(load_history(paths.run_dir(dataset.name, run_name(other, TASK))),
                              results[other]["params"]["fine_tune_start"],
                              kept=results[other]["params"]["fine_tune_kept"], synthetic=dataset.synthetic,
                              title=f"{other} on {dataset.name}")

# %% [markdown]
# **What to read here.** On real X-rays the pretrained backbones usually beat the CNN from
# scratch of notebook 02, and the differences *between* backbones are often smaller than the
# uncertainty of the test set (notebook 05 shows the intervals). A bigger backbone is not
# automatically better; it is always slower. With `WEIGHTS=None` (offline) the backbones start
# from random weights and the comparison says nothing about transfer learning.
#
# ## Key takeaways
# - Freeze first (`trainable = False`), fine-tune second, with a learning rate far below the first
#   phase's; recompile after every change of `trainable`.
# - Keep batch normalization frozen (inference mode) while fine-tuning on small batches.
# - Keep phase 2 only if it beats phase 1 on validation.
# - Each backbone has its own preprocessing and native size: keep them with the model.
# - Compare on one split with one threshold rule; report time and size next to the scores.
#
# ## Exercises
# Compare the settings by the **validation** AUC (the `val_auc` curves and the "val AUC" column):
# the test columns are measured once, for the record, and must not pick the winner.
#
# 1. Skip phase 1 (`EPOCHS = 0`) and fine-tune right away. What happens to the validation curve?
# 2. Unfreeze the whole backbone (`FINE_TUNE_FRACTION = 1.0`) with the same learning rate.
# 3. In the fine-tuning cell, unfreeze the batch normalization layers too (drop the `if`), with
#    `BACKBONES = ["resnet50"]` (VGG16 has none). What happens to the validation curve after the line?
# 4. Add `"mobilenetv2"` or `"efficientnetb0"` to `BACKBONES`: how do time and validation AUC compare?
#
# <details><summary>Solutions</summary>
#
# 1. The random head sends large gradients into the pretrained layers at the start, and the
#    useful ImageNet features get damaged: training is less stable and usually ends lower.
# 2. Many more parameters learn from the same images: training slows down and over-fits
#    sooner; with a small learning rate and early stopping it can still work on larger datasets.
# 3. The batch statistics of small chest-image batches replace ImageNet's: the validation loss
#    usually jumps right after the line, and the keep rule often restores the phase-1 weights.
# 4. Both are much lighter (see the parameters column) and faster; on chest X-rays their validation
#    AUC is often close to the larger backbones'. They are registered in `helpers.models.BACKBONES`.
# </details>
#
# ## References
# - Simonyan & Zisserman (2015), VGG. https://arxiv.org/abs/1409.1556
# - He et al. (2016), ResNet. https://arxiv.org/abs/1512.03385
# - Szegedy et al. (2016), Inception-v3. https://arxiv.org/abs/1512.00567
# - Chollet (2017), Xception. https://arxiv.org/abs/1610.02357
# - Huang et al. (2017), DenseNet. https://arxiv.org/abs/1608.06993
# - Keras applications. https://keras.io/api/applications/
