# %% [markdown]
# # 02 · A CNN from scratch
#
# **What you will learn**
# - how images flow from the decoded cache through a `tf.data` pipeline into a Keras model;
# - how to build a small convolutional network (convolution, batch normalization, pooling, dropout)
#   with augmentation layers inside the model;
# - how to train it honestly: class weights for imbalance, early stopping on the **validation** split,
#   and the **test** split touched exactly once, at the end;
# - what over-fitting looks like on a few hundred images, and why a model must beat the
#   majority-class baseline before it means anything.
#
# **Run time:** about 5 min on a Colab GPU, about 10 min on a laptop CPU (`cpu` profile),
# under a minute with `SMOKE=True`.

# %% tags=["parameters"]
DATASET = "covid19-radiography"  # X-ray; "covid-ct" for CT; "synthetic" / "synthetic-ct" offline
SMOKE = False  # True: tiny data and epochs, about a minute on a CPU
STRICT = False  # True: fail instead of falling back to synthetic data
MAX_PER_CLASS = None  # cap images per class (whole patients), e.g. 500 on a CPU
EPOCHS = 30
IMG_SIZE = 224
BATCH_SIZE = 32
LEARNING_RATE = 1e-3

# %%
if SMOKE:  # a few hundred tiny images: a higher learning rate gets there in a few epochs
    EPOCHS, IMG_SIZE, BATCH_SIZE, LEARNING_RATE = min(EPOCHS, 8), min(IMG_SIZE, 64), 16, 3e-3

# %% [markdown]
# ## 1. The data
#
# `course_dataset` fetches the dataset (or, offline, falls back to the synthetic set and says so
# loudly), splits it **by patient** (no patient in two parts) and prints the counts.
# `load_images` decodes and resizes every image once and caches the result, so the next
# notebook starts in seconds.

# %%
from helpers import data, evaluation, images, plots
from helpers.models import train
from helpers.models import build_cnn

dataset = data.course_dataset(DATASET, smoke=SMOKE, strict=STRICT, max_per_class=MAX_PER_CLASS)
image_set = images.load_images(dataset, IMG_SIZE)

# %% [markdown]
# A glance at what the network will see: a few training images of each class, at the size
# the model gets them. For CT datasets these are axial slices rather than radiographs.

# %%
sample = image_set.manifest.groupby("label").head(4).index[:8]
plots.plot_images(image_set.images[sample], image_set.manifest.loc[sample, "label"], ncols=8,
                  title=f"{dataset.name}: training images at {IMG_SIZE}px", synthetic=dataset.synthetic);

# %% [markdown]
# ## 2. The model
#
# Four convolution blocks, each *convolution → batch normalization → ReLU → max-pooling*, then
# global average pooling, dropout and one sigmoid unit: the probability of COVID. Two details
# matter more than they look:
#
# - **Augmentation is a layer of the model** (small rotation, shift, zoom and contrast changes).
#   It is active only while training, and it travels with the saved model. There is **no
#   horizontal flip**: the heart sits on the patient's left, and side markers would flip too.
# - **Preprocessing is a layer of the model** too (here: divide by 255). The model takes raw
#   pixel values, so training, evaluation and the demo in notebook 06 cannot disagree.

# %%
model = build_cnn(IMG_SIZE)
model.summary(line_length=90)

# %% [markdown]
# ## 3. Training
#
# `train.fit` uses Adam with a cosine-decaying learning rate and **class weights**, so that the
# rarer class counts as much as the common one. It watches the validation AUC after every epoch,
# stops when it has not improved for a few epochs and restores the best weights. The test split
# plays no part in any of this.

# %%
history = train.fit(model, image_set, epochs=EPOCHS, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
                    verbose=2)
plots.plot_history(history, title=f"CNN from scratch on {dataset.name}", synthetic=dataset.synthetic);

# %% [markdown]
# **How to read the curves.** Training loss keeps falling because the network can memorise a few
# hundred images. Where the validation loss stops falling (or rises) while the training loss
# still drops, the model has started to learn the training images rather than the disease: that
# is over-fitting. Early stopping keeps the weights from the best validation epoch.
#
# ## 4. Evaluation, once, on the test split
#
# `evaluate_and_save` predicts the validation and test images, chooses the decision threshold on
# the **validation** split (Youden's J: the point that balances sensitivity and specificity), and
# writes the model and its metrics to `outputs/<dataset>/cnn/` for notebooks 05 and 06.

# %%
metrics = train.evaluate_and_save(model, image_set, dataset, history=history,
                                  params={"epochs": EPOCHS, "img_size": IMG_SIZE, "batch_size": BATCH_SIZE})
print(train.summary_line(metrics))

# %% [markdown]
# ## 5. Is that good? Compare with the majority-class baseline
#
# A "model" that always answers the class most common in training has an AUC of 0.5 and an
# accuracy equal to that class's share. Accuracy alone can look respectable on imbalanced data;
# sensitivity and specificity cannot hide it.

# %%
import pandas as pd

train_labels = evaluation.to_binary(image_set.manifest.loc[image_set.manifest["split"] == "train", "label"])
test_labels = evaluation.to_binary(image_set.manifest.loc[image_set.manifest["split"] == "test", "label"])
baseline = evaluation.majority_baseline(train_labels, test_labels)
columns = ["auc", "accuracy", "sensitivity", "specificity"]
pd.DataFrame([baseline, metrics["test"]], index=["majority class", "CNN from scratch"])[columns].round(3)

# %% [markdown]
# **What to read here.** The CNN must beat the baseline on AUC *and* on the balance of
# sensitivity and specificity. With a test split of a few dozen patients the uncertainty is
# large: notebook 05 puts 95% confidence intervals on every number.
#
# ## Key takeaways
# - Split by patient, select on validation, touch the test split once.
# - Put augmentation and preprocessing inside the model; never flip chest images horizontally.
# - A small CNN over-fits a few hundred images quickly: early stopping and dropout help, more
#   (and more varied) data helps more. Notebook 03 borrows features learned on ImageNet instead.
# - On the synthetic set the task is easy by construction; a high score there says the code works,
#   nothing about COVID-19.
#
# ## Exercises
# 1. Remove the augmentation (`build_cnn(IMG_SIZE, augment=False)`) and compare the curves.
# 2. Train with `MAX_PER_CLASS = 100`. How do the curves and the test AUC change?
# 3. Run the notebook with `DATASET = "synthetic-ct"` (or `"covid-ct"`). What changes?
#
# <details><summary>Solutions</summary>
#
# 1. Without augmentation the training loss falls faster and the gap to the validation loss opens
#    earlier: the network memorises sooner. The test AUC usually drops a little.
# 2. With fewer images the validation curve gets noisier, early stopping triggers earlier, and the
#    test AUC is lower and less certain (its confidence interval in notebook 05 widens).
# 3. Nothing in the code: CT slices go through the same pipeline. The images look different
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
