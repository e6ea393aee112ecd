# %% [markdown]
# # 03 · Transfer learning with five ImageNet backbones
#
# **What you will learn**
# - how to reuse a network trained on ImageNet (VGG16, ResNet50, InceptionV3, Xception,
#   DenseNet121) for chest images: **feature extraction** with a frozen backbone, then
#   **fine-tuning** of its top blocks with a much lower learning rate;
# - why each backbone needs its own `preprocess_input` and input size (299 px for InceptionV3 and
#   Xception), and how the course keeps that inside the saved model;
# - how to compare backbones fairly: same patient-level split, same threshold rule, same test set,
#   with training time and size next to the scores.
#
# **Run time:** about 20 min on a Colab GPU for all five backbones, about 15 min on a laptop CPU
# with the `cpu` profile (one or two backbones, small images), about a minute with `SMOKE=True`.

# %% tags=["parameters"]
DATASET = "covid19-radiography"  # X-ray; "covid-ct" for CT; "synthetic" / "synthetic-ct" offline
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
# The same dataset and the same patient-level split as notebook 02, so the models compare
# fairly. Images are decoded once per size and cached.

# %%
import pandas as pd

from helpers import data, paths, plots
from helpers.models import train
from helpers.models import BACKBONES as REGISTRY
from helpers.runs import load_history

dataset = data.course_dataset(DATASET, smoke=SMOKE, strict=STRICT, max_per_class=MAX_PER_CLASS)

# %% [markdown]
# ## 2. The backbones
#
# Each backbone was trained on ImageNet with its own input convention: VGG16 and ResNet50 expect
# BGR images minus the ImageNet mean ("caffe"), InceptionV3 and Xception values in [-1, 1] ("tf"),
# DenseNet121 standardised RGB ("torch"). Feeding the wrong one silently costs accuracy, so the
# course puts the right rule in a `Preprocess` layer inside each model. The last convolution is
# where Grad-CAM will look in notebook 05.

# %%
pd.DataFrame(
    [{"backbone": name, "input size": spec.size, "preprocessing": spec.mode, "Grad-CAM layer": spec.last_conv}
     for name, spec in REGISTRY.items() if name in BACKBONES]
)

# %% [markdown]
# ## 3. Train every backbone: feature extraction, then fine-tuning
#
# `train.train_transfer` does two phases for one backbone:
#
# 1. **Feature extraction.** The backbone is frozen; only the new head (global average pooling,
#    dropout, one sigmoid unit) learns, at a normal learning rate.
# 2. **Fine-tuning.** The top 20% of the backbone's layers are unfrozen (batch normalization
#    layers stay frozen, or their statistics would be overwritten by a few small batches) and
#    training continues with a learning rate 100 times lower.
#
# Both phases select on the validation split; the test split is only predicted at the end.
# If the ImageNet weights cannot be downloaded the backbone starts from random weights, with a
# loud warning, and the report marks the run.

# %%
results, histories = {}, {}
for name in BACKBONES:
    model, metrics = train.train_transfer(
        name, dataset, img_size=IMG_SIZE, weights=WEIGHTS, epochs=EPOCHS, fine_tune_epochs=FINE_TUNE_EPOCHS,
        fine_tune_fraction=FINE_TUNE_FRACTION, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
        fine_tune_learning_rate=FINE_TUNE_LEARNING_RATE, strict=STRICT,
    )
    results[name] = metrics
    histories[name] = load_history(paths.run_dir(dataset.name, name))
    print(train.summary_line(metrics))

# %% [markdown]
# ## 4. Results
#
# One row per backbone, measured on the **test** split at the threshold chosen on validation.
# Read AUC first (threshold-free), then sensitivity and specificity together, then the cost:
# training time and parameters.

# %%
table = pd.DataFrame(
    [{"backbone": name, "weights": m["weights"] or "random (!)", "AUC": m["test"]["auc"],
      "sensitivity": m["test"]["sensitivity"], "specificity": m["test"]["specificity"],
      "train s": m["train_seconds"], "parameters (M)": m["n_parameters"] / 1e6,
      "trainable (M)": m["params"]["trainable_parameters"] / 1e6}
     for name, m in results.items()]
).set_index("backbone")
table.round(3)

# %% [markdown]
# And the learning curves of each backbone. The jump in the middle is the start of fine-tuning:
# the validation curve should improve a little more, not collapse (if it collapses, the
# fine-tuning learning rate is too high).

# %%
for name, history in histories.items():
    plots.plot_history(history, title=f"{name} on {dataset.name}", synthetic=dataset.synthetic)

# %% [markdown]
# **What to read here.** On real X-rays the pretrained backbones usually beat the CNN from
# scratch of notebook 02, and the differences *between* backbones are often smaller than the
# uncertainty of a test set of a few hundred patients (notebook 05 shows the intervals). A
# bigger backbone is not automatically better; it is always slower. With `WEIGHTS=None` (offline)
# the backbones start from random weights and the comparison says nothing about transfer
# learning.
#
# ## Key takeaways
# - Freeze first, fine-tune second, with a learning rate far below the first phase's.
# - Each backbone has its own preprocessing and native size: keep them with the model.
# - Compare on one split with one threshold rule; report time and size next to the scores.
#
# ## Exercises
# 1. Skip phase 1 (`EPOCHS = 0`) and fine-tune right away. What happens to the validation curve?
# 2. Unfreeze the whole backbone (`FINE_TUNE_FRACTION = 1.0`) with the same learning rate.
# 3. Add `"mobilenetv2"` or `"efficientnetb0"` to `BACKBONES`: how do time and AUC compare?
#
# <details><summary>Solutions</summary>
#
# 1. The random head sends large gradients into the pretrained layers at the start, and the
#    useful ImageNet features get damaged: training is less stable and usually ends lower.
# 2. Many more parameters learn from a few hundred images: training slows down and over-fits
#    sooner; with a small learning rate and early stopping it can still work on larger datasets.
# 3. Both are much lighter (a few million parameters) and faster; on chest X-rays their AUC is
#    often close to the larger backbones'. They are registered in `helpers.models.BACKBONES`.
# </details>
#
# ## References
# - Simonyan & Zisserman (2015), VGG. https://arxiv.org/abs/1409.1556
# - He et al. (2016), ResNet. https://arxiv.org/abs/1512.03385
# - Szegedy et al. (2016), Inception-v3. https://arxiv.org/abs/1512.00567
# - Chollet (2017), Xception. https://arxiv.org/abs/1610.02357
# - Huang et al. (2017), DenseNet. https://arxiv.org/abs/1608.06993
# - Keras applications. https://keras.io/api/applications/
