# %% [markdown]
# # 06 · Try it: upload a chest image
#
# **What you will learn**
# - how a trained model is used on a new image: the same reading, resizing and preprocessing as in
#   training, one probability, and the threshold chosen on the validation split;
# - how to read a Grad-CAM map next to the image, and when to distrust it;
# - why a model answers confidently even for images it was never meant to see, and which simple
#   checks can warn you (but never guarantee anything);
# - how to predict from the command line with `python -m helpers predict`.
#
# **Run time:** (filled in by tools/build_notebooks.py from notebooks/timings.json)
#
# Opening it changes nothing on disk: it reads the models and predictions that exist. Only when
# there is no model at all it trains a quick CNN into its own folder `outputs/demo/`.
#
# **As a web page:** `make demo` serves this notebook as a standalone app with Voilà (code hidden);
# `make demo MODEL=outputs/<dataset>/<model>` preselects a model.

# %% tags=["parameters"]
DATASET = "covid19-radiography"  # the dataset of the model to preselect; "covid-ct" for CT; "synthetic" / "synthetic-ct" offline
SMOKE = False  # True: tiny data for the quick model (trained only when no model exists at all)
STRICT = False  # True: fail instead of falling back to synthetic data (only used when a quick model is trained)
TASK = "covid-vs-normal"  # "covid-vs-pneumonia": COVID-19 vs other pneumonias; "three-class": normal/pneumonia/COVID-19
MODEL = "cnn"  # the model of TASK to preselect: "cnn" (02), a backbone such as "vgg16" (03), "vgg16-xgboost" (04)

# %% [markdown]
# ## 1. What this demo is, and what it is not
#
# It **is** a window into a model you trained: you give it an image, it shows the probability
# of COVID (a three-class model: the probability of each class), the label at the model's
# threshold, and a Grad-CAM map of where the model looked.
#
# It is **not** a diagnostic device, and not even a test of one:
# - the model learned from a few thousand images of a few sources (or from synthetic cartoons);
#   it has never seen your hospital, your scanner, a child, a lateral view or a photo of a screen,
#   and it will still answer with a confident-looking number;
# - it knows the classes of its task only: `COVID` and `NORMAL` (the default task), `COVID` and
#   `PNEUMONIA` (`covid-vs-pneumonia`), or all three (`three-class`). Anything else, a tumour or a
#   broken rib, is forced into one of them; a model of the default task forces a pneumonia of
#   another cause into `COVID` or `NORMAL`;
# - the threshold was chosen on the validation split of *its* dataset; on other images the
#   balance of sensitivity and specificity is unknown.
#
# For CT models, upload **single axial slices** (PNG, JPEG or one DICOM file), not whole volumes.
#
# ## 2. The model
#
# We look for the model folder `outputs/<DATASET>/<MODEL>/` that notebook 02, 03 or 04 wrote for
# `TASK` (`outputs/<DATASET>/<MODEL>-<TASK>/` for a task other than the default), or the one
# `make demo MODEL=...` named; if it is missing, the model of `TASK` that did best on its own
# validation split is preselected instead (a model of another task only when there is none, and the
# cell says so: AUCs of two tasks are not comparable). Nothing is loaded or rebuilt from the datasets:
# the demo only reads what the training notebooks saved. If no model exists at all (in Colab every
# notebook starts in a new VM: `PERSIST = True` in the setup cell keeps the models of 02 and 03 in
# your Google Drive), a quick small CNN is trained here into `outputs/demo/`, so that the course's
# own outputs stay as they were; it is weaker than notebook 02's model. It is trained for `TASK`.

# %%
from helpers.app import demo
from helpers.app import predict
from helpers.runs import read_run

model_dir = demo.choose_model(DATASET, MODEL, task=TASK)
if model_dir is None:  # no model at all: a quick CNN of TASK
    model_dir = demo.quick_model(DATASET, smoke=SMOKE, strict=STRICT, task=TASK)
chosen = read_run(model_dir)
print(f"preselected model: {model_dir} (task {chosen.task}: classes {', '.join(chosen.classes)})")

# %% [markdown]
# ## 3. The app
#
# Pick a model (every trained model under `outputs/` is listed: CNN, transfer models and the
# VGG16-features hybrids, synthetic ones marked), then upload one or more images: PNG, JPEG,
# TIFF, BMP or DICOM. They are processed in memory and never saved. For each image you get:
# - the image next to an **explanation**: Grad-CAM for the Keras models; for a hybrid, which has
#   no gradient to follow through its trees, *occlusion sensitivity* (each of 5 x 5 squares is
#   covered in turn, and the drop of the score is shown);
# - a **bar** with the probability of COVID, a dashed line at the **threshold**, and both numbers
#   with as many decimals as it takes to see which is larger, plus the margin between them;
# - **warnings** when the image does not look like what the model was trained on (blank or nearly
#   blank, several pages, far from square, very small, in colour). They are hints, not checks: a
#   wrong image can pass them.
#
# Choosing another model predicts the images on display again with it.
#
# In Colab the widgets work as they are; in Jupyter you need `ipywidgets` installed. Uploads travel
# to the kernel in one websocket message, and Jupyter's server closes the connection on a message
# above 10 MiB (the app then stops answering): `make demo` raises that limit, and so does
# `jupyter lab --ServerApp.tornado_settings="{'websocket_max_message_size': 134217728}"`.
# (Viewing this notebook on GitHub? Widgets do not show there: section 4 has a static copy.)

# %%
app = demo.UploadDemo(model=model_dir)
app.widget

# %% [markdown]
# ## 4. The same app, without clicking
#
# The upload button calls `app.on_upload`, which calls `app.process(files)` with the files'
# names and bytes. Here `app.show(files)` makes the same cards as a static copy below (the app
# above is left empty for your own uploads), for a few images of the model's **test** split
# (never used for training or for choosing the threshold), half of each class, found in the data
# cache; their names say the true label. Where the dataset is not on this machine, generated
# cartoon images stand in.

# %%
app.show(demo.sample_uploads(model_dir, n=4))

# %% [markdown]
# **How to read a card.**
# - The **bar** is the model's probability of COVID; the label changes where the bar crosses the
#   dashed threshold line. A probability of 0.55 with a threshold of 0.5 is not "55% sure": it is
#   a score, and calibration (notebook 05) says how far it can be read as a probability.
# - In the **Grad-CAM** panel, red marks where the evidence for COVID was strongest. On real data,
#   colour on the lower, outer lung zones is what a radiologist would look at; colour on text,
#   markers, the image border or outside the body is a sign of a **shortcut** (notebook 05).
#   An image with no evidence for COVID has a blue map.
# - With the quick model of `outputs/demo/` or a synthetic model, the numbers are meaningless by design.
#
# ## 5. When the upload is not an image
#
# Anything can be uploaded: a PDF, a text file, an empty or truncated file, a 50 MB scan. The
# app reads every file with the course's robust reader and answers with a message, never a
# traceback. Here is a text file:

# %%
app.show([("patient_notes.txt", b"Patient 12: cough and fever for three days.")])

# %% [markdown]
# ## 6. From the command line
#
# The same prediction, without widgets, for scripts and batch jobs. In a terminal:
#
# ```bash
# python -m helpers predict --model outputs/covid19-radiography/cnn image1.png image2.dcm
# ```
#
# It prints one JSON line per image (`file`, `probability`, `label`, `threshold`, `margin`, `warnings`),
# or `{"file": ..., "error": ...}` for a file it cannot read, and exits with status 1 if any file
# failed (2 if there is no usable model); a summary with the margins goes to the error stream.
# It serves every kind of model, hybrids included. The cell below calls the same function from
# Python, on two test images (the explanation is skipped on the command line, so it is fast).

# %%
files = [str(path) for path in demo.sample_files(model_dir, n=2)]
print("exit status:", predict.main(["--model", str(model_dir), *files]) if files else "no test images on this machine")

# %% [markdown]
# ## Key takeaways
# - A deployed model needs exactly the preprocessing it was trained with; keeping it inside the
#   saved model (notebook 02) is what makes the app, the command line and the evaluation agree.
# - The threshold is part of the model: it was chosen on validation data and means "balance
#   sensitivity and specificity on *that* dataset".
# - A classifier always answers. Heuristic warnings catch a few obvious misuses (colour photos,
#   cropped figures); they cannot tell a lateral view, a child or another disease from what the
#   model knows.
# - Grad-CAM shows where the model looked, not where the disease is.
#
# ## Exercises
# 1. Upload a photo of anything (a cat, a landscape). What does the model say, and which warning
#    appears?
# 2. Upload the same X-ray twice: once as it is and once cropped to the left lung only. How do
#    the probability and the Grad-CAM map change?
# 3. Pick another model in the drop-down (for example a transfer model from notebook 03) and
#    upload the same images. Do the two models agree? Do their Grad-CAM maps?
#
# <details><summary>Solutions</summary>
#
# 1. The model still gives a probability, sometimes a high one: it has only ever learned to
#    separate two kinds of chest images. The colour warning appears for a colour photo; a
#    grayscale photo of something else may pass every check. That is why the warnings are hints.
# 2. The crop is squeezed to a square, so the anatomy is distorted (an aspect-ratio warning
#    appears when the crop is far from square), and the map usually moves to whatever is left.
#    Small changes to an image should not flip a good model's answer; large ones often do.
# 3. Models trained on the same data often agree on clear cases and disagree near the threshold;
#    their maps can differ a lot even when the labels agree, a reminder that a map explains one
#    model, not the disease.
# </details>
#
# ## References
# - Selvaraju et al. (2017), *Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
#   Localization*. https://arxiv.org/abs/1610.02391
# - DeGrave, Janizek & Lee (2021), *AI for radiographic COVID-19 detection selects shortcuts over
#   signal*. https://www.nature.com/articles/s42256-021-00338-7
# - Roberts et al. (2021), *Common pitfalls and recommendations for using machine learning to
#   detect and prognosticate for COVID-19 using chest radiographs and CT scans*.
#   https://www.nature.com/articles/s42256-021-00307-0
# - ipywidgets `FileUpload`. https://ipywidgets.readthedocs.io/en/stable/examples/Widget%20List.html#file-upload
