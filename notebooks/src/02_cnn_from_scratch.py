# %% [markdown]
# # 02 · A CNN from scratch
#
# **What you will learn**
# - how images flow from the decoded cache through a `tf.data` pipeline into a Keras model;
# - how to write a small convolutional network in Keras, layer by layer (convolution, batch
#   normalization, pooling, dropout, a sigmoid output, or a softmax for three classes), with augmentation
#   layers inside the model;
# - how to compile and fit it honestly: class weights for imbalance, early stopping on the **validation** split,
#   and the **test** split touched exactly once, at the end;
# - what over-fitting looks like on a small dataset, and why a model must beat the
#   majority-class baseline before it means anything.
#
# **Run time:** about 5 min on a Colab GPU, about 10 min on a laptop CPU (`cpu` profile),
# under a minute with `SMOKE=True`.

# %% tags=["parameters"]
DATASET = "covid19-radiography"  # X-ray; "covid-ct" for CT; "synthetic" / "synthetic-ct" offline
TASK = "covid-vs-normal"  # "covid-vs-pneumonia": COVID-19 vs other pneumonias; "three-class": normal/pneumonia/COVID-19
SMOKE = False  # True: tiny data and epochs, about a minute on a CPU
STRICT = False  # True: fail instead of falling back to synthetic data
MAX_PER_CLASS = None  # cap images per class (whole patients), e.g. 500 on a CPU
EPOCHS = 30
IMG_SIZE = 224
BATCH_SIZE = 32
LEARNING_RATE = 1e-3

# %%
if SMOKE:  # tiny images and few of them: a higher learning rate gets there in a few epochs
    EPOCHS, IMG_SIZE, BATCH_SIZE, LEARNING_RATE = min(EPOCHS, 8), min(IMG_SIZE, 64), 16, 3e-3

# %% [markdown]
# ## 1. The data
#
# `course_dataset` fetches the dataset (or, offline, falls back to the synthetic set and says so
# loudly), keeps the classes of `TASK` (its notes say which findings went to which class), splits it
# **by patient** (no patient in two parts) and prints the counts.
# `load_images` decodes and resizes every image once and caches the result, so the next
# notebook starts in seconds.

# %%
import time

import keras
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from keras import layers

from helpers import data, evaluation, images, plots
from helpers.evaluation import multiclass
from helpers.models import train
from helpers.models.pipeline import labels_of, split_pipeline
from helpers.runs import read_runs

dataset = data.course_dataset(DATASET, smoke=SMOKE, strict=STRICT, max_per_class=MAX_PER_CLASS, task=TASK)
image_set = images.load_images(dataset, IMG_SIZE)
counts = image_set.manifest.groupby("split").agg(images=("path", "size"), patients=("patient_id", "nunique"))
counts.loc[["train", "val", "test"]]

# %% [markdown]
# A glance at what the network will see: a few images of each class, drawn from every split (not
# only the training split), at the size the model gets them. For CT datasets these are axial
# slices rather than radiographs.

# %%
sample = image_set.manifest.groupby("label").head(8 // len(dataset.classes)).index[:8]
plots.plot_images(image_set.images[sample], image_set.manifest.loc[sample, "label"], ncols=8,
                  title=f"{dataset.name}: images from every split at {IMG_SIZE}px", synthetic=dataset.synthetic);

# %% [markdown]
# ## 2. Augmentation: a layer of the model
#
# A small dataset is seen many times during training. Augmentation shows the network a slightly
# different version of every image at every epoch: turned by a few degrees, shifted, zoomed, its
# contrast changed. The network cannot memorise the exact pixels and has to learn what stays the
# same. These layers are **part of the model**: Keras runs them only while training
# (`training=True`) and passes images through unchanged when predicting, and they travel with
# the saved model.
#
# The factors are fractions: `RandomRotation(0.03)` turns by up to 0.03 of a full turn (about
# 11 degrees) either way, `RandomTranslation(0.05, 0.05)` shifts by up to 0.05 of the height and
# width, `RandomZoom(0.1)` zooms in or out by up to 0.1, `RandomContrast(0.1)` scales the contrast
# by up to 0.1. `fill_mode="constant"` fills the uncovered border with black, as on a real film.

# %% tags=["lesson-augment"]
def make_augmentation(seed=42):
    return keras.Sequential(
        [
            layers.RandomRotation(0.03, fill_mode="constant", seed=seed),
            layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed),
            layers.RandomZoom(0.1, fill_mode="constant", seed=seed),
            layers.RandomContrast(0.1, seed=seed),
        ],
        name="augment",
    )

# %% [markdown]
# One training image through these layers eight times, and, for comparison, what a horizontal
# flip would do to it. There is **no horizontal flip** in the course: the heart sits on the
# patient's left (the aortic arch and the stomach bubble too), and a burnt-in "L" or "R" side
# marker would read backwards. A flipped chest is an anatomy no scanner produces; the network
# would only learn that anatomy has no side.

# %%
first = np.flatnonzero((image_set.manifest["split"] == "train").to_numpy())[0]
plots.plot_augmentations(image_set.images[first], make_augmentation(), n=8, synthetic=dataset.synthetic,
                         title=f"one training image ({image_set.manifest['label'].iloc[first]}), augmented 8 times");

# %% [markdown]
# **What to read.** Every version is still a plausible chest image: the lungs stay where they were,
# only a little turned, shifted or zoomed, and none of them is mirrored. If an augmented image looks
# like something no scanner would produce, the augmentation is too strong.
#
# ## 3. The model, layer by layer
#
# The network takes raw pixel values (0..255, the grey image repeated on three channels) and
# returns, for a task of two classes, one number: the probability of COVID; for the three classes
# (`TASK = "three-class"`), one probability per class, in the order of `dataset.classes`.
#
# 1. **Augmentation** (above), active only in training.
# 2. **Rescaling** to 0..1. Preprocessing is a layer of the model too, so training, evaluation and
#    the demo in notebook 06 cannot disagree about it.
# 3. **Convolution blocks**: each *convolution* (3 x 3 filters that slide over the image) →
#    *batch normalization* (keeps the activations in a stable range, so a higher learning rate
#    works) → *ReLU*. Every block but the last ends in a 2 x 2 **max-pooling** that halves the
#    height and width; the number of filters doubles from block to block. The last block does not
#    pool: its feature map (`last_conv`) keeps more positions, which is where Grad-CAM looks in
#    notebook 05.
# 4. **Global average pooling** turns each feature map into one number, **dropout** switches off
#    a random share of them in training (against over-fitting), and one **sigmoid** unit gives the
#    probability. With three classes the last layer has three units and a **softmax**: three
#    probabilities that sum to 1. That last layer computes in `float32` even when the rest of the
#    network runs in `float16` on a GPU (mixed precision), so the probability is not rounded.
#
# `helpers.models.build_cnn` is the same network (the upload demo and the tests use it); a test of
# the course builds both and checks that they have the same layers, shapes and parameter count.
# Change the cell below freely: that is what it is for.

# %% tags=["lesson-cnn"]
def make_cnn(size, n_classes=2, filters=(16, 32, 64, 128), dropout=0.3, seed=42):
    inputs = keras.Input((size, size, 3), name="image")
    x = make_augmentation(seed)(inputs)
    x = layers.Rescaling(1.0 / 255, name="preprocess")(x)
    for i, n in enumerate(filters):
        last = i == len(filters) - 1
        x = layers.Conv2D(n, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
        x = layers.Activation("relu", name="last_conv" if last else f"relu{i + 1}")(x)
        if not last:
            x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    if n_classes == 2:  # one sigmoid unit: the probability of COVID
        outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    else:  # a softmax: one probability per class (in dataset.classes order), summing to 1
        outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="probability")(x)
    return keras.Model(inputs, outputs, name="cnn")

# %% [markdown]
# Build it for the task's number of classes (inside the distribution strategy `helpers.setup()`
# chose, so that several GPUs would share it) and look at the summary: the output shape of every
# layer and its number of parameters.
# Convolutions have `use_bias=False` because the batch normalization that follows adds its own
# offset.

# %%
n_classes = len(dataset.classes)  # 2: one sigmoid unit; 3 (NORMAL, PNEUMONIA, COVID): a 3-unit softmax
with ENV.strategy.scope():
    model = make_cnn(IMG_SIZE, n_classes)
print(f"task {dataset.task}: classes {', '.join(dataset.classes)} -> output layer "
      f"{model.get_layer('probability').units} unit(s), {model.get_layer('probability').activation.__name__}")
model.summary(line_length=90)

# %% [markdown]
# ## 4. Training
#
# First the data side. `split_pipeline` turns the cached images of one split into batches of
# `(image, label)`: the label is 1 for COVID and 0 otherwise with two classes, the index of the class
# in `dataset.classes` with three (`classes=`). The training pipeline is reshuffled every epoch.
# **Class weights** multiply the loss of each training image by `n / (k x n_class)` (`k` classes),
# so that a rarer class counts as much as a common one. Only the training loss is weighted; the
# validation loss Keras reports is not.

# %%
classes = dataset.classes if n_classes > 2 else None  # three classes: class indices as labels
train_data = split_pipeline(image_set, "train", batch_size=BATCH_SIZE, training=True, classes=classes)
val_data = split_pipeline(image_set, "val", batch_size=BATCH_SIZE, classes=classes)
class_weight = train.class_weights(labels_of(image_set, "train", classes), n_classes)
print(f"class weights ({', '.join(f'{i} = {name}' for i, name in enumerate(dataset.classes))}):",
      {k: round(w, 3) for k, w in class_weight.items()})

# %% [markdown]
# Then `compile`: the loss (binary cross-entropy for one sigmoid output; sparse categorical
# cross-entropy for a softmax over class indices), the metrics to report after every epoch, and the
# optimizer, Adam, with a learning rate that decays along a cosine from `LEARNING_RATE` to a
# twentieth of it over the whole training.

# %% tags=["lesson-compile"]
steps = EPOCHS * len(train_data)  # batches over the whole training
schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, decay_steps=steps, alpha=0.05)
if n_classes == 2:  # early stopping will watch the validation AUC
    loss, metrics, monitor = "binary_crossentropy", [keras.metrics.AUC(name="auc"),
                                                     keras.metrics.BinaryAccuracy(name="accuracy")], "val_auc"
else:  # three classes: early stopping will watch the validation loss
    loss, metrics, monitor = "sparse_categorical_crossentropy", [
        keras.metrics.SparseCategoricalAccuracy(name="accuracy")], "val_loss"
with ENV.strategy.scope():
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=metrics)

# %% [markdown]
# And `fit`, with a callback that watches the validation AUC (with three classes: the validation
# loss) after every epoch, stops when it has not improved for five epochs and restores the weights
# of the best epoch (**early stopping**). The test split plays no part in any of this.

# %% tags=["lesson-fit"]
stop = keras.callbacks.EarlyStopping(monitor, mode="max" if monitor == "val_auc" else "min", patience=5,
                                     restore_best_weights=True)
started = time.perf_counter()
result = model.fit(train_data, validation_data=val_data, epochs=EPOCHS, class_weight=class_weight,
                   callbacks=[stop], shuffle=False, verbose=2)  # shuffle=False: the pipeline shuffles
history = {name: [float(v) for v in values] for name, values in result.history.items()}
history["seconds"] = [round(time.perf_counter() - started, 1)]
best = int(np.argmax(history[monitor]) if monitor == "val_auc" else np.argmin(history[monitor]))
watched = "AUC" if monitor == "val_auc" else "loss"
print(f"{len(history['loss'])} epochs in {history['seconds'][0]:.0f} s; best validation {watched} "
      f"{history[monitor][best]:.3f} at epoch {best + 1} (those weights are kept)")

# %%
plots.plot_history(history, title=f"CNN from scratch on {dataset.name} ({dataset.task})", synthetic=dataset.synthetic);

# %% [markdown]
# **How to read the curves.** The training loss keeps falling as the network fits the training
# images ever more closely. Where the validation loss stops falling (or rises) while the
# training loss still drops, the model has started to learn the training images rather than the
# disease: that is over-fitting. Early stopping keeps the weights from the best validation epoch.
# The two losses are not on the same footing: the training loss is class-weighted and measured
# with augmentation and dropout on, the validation loss is neither. Compare their shapes, not
# their levels.
#
# ## 5. Evaluation, once, on the test split
#
# `evaluate_and_save` predicts the validation and test images, chooses the decision threshold on
# the **validation** split (Youden's J: the point that balances sensitivity and specificity), and
# writes the model and its metrics to `outputs/<dataset>/cnn/` (for another task
# `outputs/<dataset>/cnn-<task>/`) for notebooks 05 and 06. With three classes the threshold is the
# one of COVID against the rest (NORMAL and PNEUMONIA together), and the metrics add the three
# classes' own.

# %%
metrics = train.evaluate_and_save(model, image_set, dataset, history=history,
                                  params={"epochs": EPOCHS, "img_size": IMG_SIZE, "batch_size": BATCH_SIZE})
print(train.summary_line(metrics))
if "multiclass" in metrics:
    three = metrics["multiclass"]["test"]
    print(f"the line above is COVID against the rest; the {n_classes} classes on test: accuracy "
          f"{three['accuracy']:.3f}, macro one-vs-rest AUC {three['macro_auc']:.3f}")

# %% [markdown]
# The ROC curve (every threshold at once; the dot is the threshold chosen on validation) and the
# confusion matrix at that threshold, on the test split:

# %%
run = next(r for r in read_runs(dataset=dataset.name, task=TASK) if r.model == "cnn")
if run.multiclass:
    print(f"{n_classes} classes: the ROC curve and the 2 x 2 confusion matrix are COVID against the rest "
          f"({' and '.join(c for c in run.classes if c != 'COVID')} together); the {n_classes} x {n_classes} "
          "matrix (each image's most probable class) follows")
plots.plot_roc_pr([run]);
plots.plot_confusion_matrices([run]);
if run.multiclass:
    display(pd.DataFrame(metrics["multiclass"]["test"]["confusion"], index=pd.Index(run.classes, name="true"),
                         columns=pd.Index(run.classes, name="predicted")))

# %% [markdown]
# **What to read.** The ROC curve should bow towards the top-left corner, well away from the
# diagonal (a coin). In the confusion matrix, the bottom-left cell counts the **missed COVID
# cases**, the top-right one the false alarms.
#
# ## 6. Is that good? Compare with the majority-class baseline
#
# A "model" that always answers the class most common in training has an AUC of 0.5 and an
# accuracy equal to that class's share. Accuracy alone can look respectable on imbalanced data;
# sensitivity and specificity cannot hide it.

# %%
train_rows = image_set.manifest[image_set.manifest["split"] == "train"]
test_rows = image_set.manifest[image_set.manifest["split"] == "test"]
baseline = evaluation.majority_baseline(evaluation.to_binary(train_rows["label"]),
                                        evaluation.to_binary(test_rows["label"]))
columns = ["auc", "accuracy", "sensitivity", "specificity"]
print("COVID against the rest:" if n_classes > 2 else f"{' vs '.join(dataset.classes[::-1])}:")
display(pd.DataFrame([baseline, metrics["test"]], index=["majority class", "CNN from scratch"])[columns].round(3))
if n_classes > 2:
    print(f"the {n_classes} classes:")
    majority = multiclass.majority_baseline(train_rows["label"], test_rows["label"], dataset.classes)
    display(pd.DataFrame([majority, metrics["multiclass"]["test"]], index=["majority class", "CNN from scratch"])[
        ["accuracy", "macro_auc"]].round(3))
display(Markdown(f"The test split holds **{len(test_rows)} images of {test_rows['patient_id'].nunique()} "
                 f"patients**: every number above is measured on them, once."))

# %% [markdown]
# **What to read here.** The CNN must beat the baseline on AUC *and* on the balance of
# sensitivity and specificity. With a test split of this size the uncertainty is large: notebook
# 05 puts 95% confidence intervals on every number.
#
# ## Key takeaways
# - Split by patient, select on validation, touch the test split once.
# - Put augmentation and preprocessing inside the model; never flip chest images horizontally.
# - A small CNN over-fits a small dataset quickly: early stopping and dropout help, more
#   (and more varied) data helps more. Notebook 03 borrows features learned on ImageNet instead.
# - On the synthetic set the task is easy by construction; a high score there says the code works,
#   nothing about COVID-19.
#
# ## Exercises
# Compare settings on the **validation** split only (the `val_auc` curve and the best validation
# AUC printed after training): the test split is for the one final measurement, and choosing a
# setting by its test score makes that score optimistic.
#
# 1. Remove the augmentation: in `make_cnn`, replace `make_augmentation(seed)(inputs)` by
#    `inputs`, run sections 3 and 4 again and compare the curves and the best validation AUC.
# 2. Add a fifth block (`filters=(16, 32, 64, 128, 256)`): how do the parameter count, the time per
#    epoch and the validation curve change?
# 3. Train with `MAX_PER_CLASS = 100`. How do the curves and the best validation AUC change?
# 4. Run the notebook with `DATASET = "synthetic-ct"` (or `"covid-ct"`). What changes?
#
# <details><summary>Solutions</summary>
#
# 1. Without augmentation the training loss falls faster and the gap to the validation loss opens
#    earlier: the network memorises sooner. The best validation AUC is usually a little lower and
#    reached earlier.
# 2. The summary shows the extra parameters (the new block's 3 x 3 x 128 x 256 kernel is most of
#    them); each epoch takes longer. On a small dataset the validation curve rarely improves and
#    often gets noisier: more capacity helps only with more data.
# 3. With fewer images the validation curve gets noisier, early stopping triggers earlier, and the
#    best validation AUC is lower and less certain (a validation split of a few patients moves a
#    lot when one image changes sides).
# 4. Nothing in the code: CT slices go through the same pipeline. The images look different
#    (axial slices), the COVID-CT split is the dataset's official patient-level split, and the
#    task is harder on real CT slices than on X-rays of the same size.
# </details>
#
# ## References
# - Ioffe & Szegedy (2015), *Batch Normalization*. https://arxiv.org/abs/1502.03167
# - Srivastava et al. (2014), *Dropout*. https://jmlr.org/papers/v15/srivastava14a.html
# - Cohen et al. (2020), *COVID-19 image data collection*. https://github.com/ieee8023/covid-chestxray-dataset
# - Chowdhury et al. (2020) and Rahman et al. (2021), *COVID-19 Radiography Database*.
#   https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database
# - Zhao et al. (2020), *COVID-CT-Dataset*. https://github.com/UCSD-AI4H/COVID-CT
