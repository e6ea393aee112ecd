# %% [markdown]
# # 01 · Exploring the data, and what the early COVID-19 classifiers got wrong
#
# **What you will learn**
# - what is inside a chest X-ray (or CT) dataset: classes, splits, sources, patients, views,
#   age and sex, image sizes, intensities and file formats;
# - why a split **by image** leaks patients from training into testing, and how many
#   (experiment a);
# - why negatives from **another source** (often children) let a model learn the hospital
#   instead of the disease, and how to measure that risk with a 16x16 thumbnail
#   (experiment b);
# - why COVID-19 models must not flip chest images horizontally.
#
# In 2020 paper after paper reported near-perfect COVID-19 detection from chest images. A
# systematic review (Roberts et al. 2021) screened 2,212 studies, included 62 of them, and found
# none of their models fit for clinical use. Among the most common flaws were the data problems
# this notebook measures: the same patients (or images) in training and testing, and
# "Frankenstein" datasets whose classes
# come from different sources, such as pediatric normals against adult COVID-19 cases. Nothing
# here trains a deep network: look at the data before you model it.
#
# **Run time:** about 10 min on Colab (no GPU needed; most of it downloads about 2 GB and decodes
# images), under a minute with `SMOKE=True`.

# %% tags=["parameters"]
DATASET = "covid19-radiography"  # X-ray; "covid-ct" for CT; "synthetic" / "synthetic-ct" offline
TASK = "covid-vs-normal"  # "covid-vs-pneumonia": COVID-19 vs other pneumonias; "three-class": normal/pneumonia/COVID-19
SMOKE = False  # True: small synthetic data, runs in well under a minute on a CPU
STRICT = False  # True: fail instead of falling back to synthetic data
MAX_PER_CLASS = None  # cap images per class (whole patients), e.g. 1000 on a CPU
IMG_SIZE = 128  # size of the decoded image cache (thumbnails, statistics, sample grids)
SHORTCUT_DEMO = True  # experiment (b) also on purpose-built shortcut sets (synthetic tag; children)

# %%
if SMOKE:
    IMG_SIZE = min(IMG_SIZE, 64)

# %% [markdown]
# ## 1. Load the dataset
#
# `course_dataset` fetches the dataset (or, offline, falls back to the synthetic set and says so
# loudly), builds the **manifest** (one row per image: path, label, patient, source, view, sex,
# age, split) and splits it **by patient**. Its notes say what was left out and why: read them.
# The COVID-19 Radiography Database's pediatric normals, for example, are left out on purpose
# (section 9 shows why). `TASK` chooses the classes: `covid-vs-normal` (COVID-19 against normal
# lungs), `covid-vs-pneumonia` (COVID-19 against other pneumonias only: the question a clinic
# actually asks) or `three-class` (normal, other pneumonia, COVID-19, as in COVID-Net's COVIDx).

# %%
from IPython.display import display

from helpers import explore
from helpers.data.dataset import course_dataset, near_duplicates
from helpers.images import load_images
from helpers.plots import exploration as figures

dataset = course_dataset(DATASET, smoke=SMOKE, strict=STRICT, max_per_class=MAX_PER_CLASS, task=TASK)
dataset.manifest.head()

# %% [markdown]
# ### The task: which findings became which class
#
# Every source labels its images its own way: folders (`Viral Pneumonia`, `Normal`), findings in a
# metadata table (`Pneumonia/Bacterial/Streptococcus`), or nothing but COVID-19 and normal. The
# task's **label mapping** turns them into the task's classes and leaves the rest out, and it is
# never silent: the notes below list what went where, with counts, and what was left out. For the
# two tasks with a pneumonia class, the `finding` column keeps each image's upstream finding.

# %%
print(f"task {dataset.task!r}: classes {', '.join(dataset.classes)} (class-index order; COVID is the positive class)")
for note in dataset.notes:
    print(f"- {note}")
if "finding" in dataset.manifest:
    display(dataset.manifest.groupby(["finding", "label"]).size().rename("images").to_frame())

# %% [markdown]
# ## 2. Class balance per split and per source
#
# The first table counts images per split (one column per class of the task: with a pneumonia
# class, PNEUMONIA too), the second per source. The split keeps the share of each class about the
# same in train, val and test (it is *stratified*). The per-source table
# is the one to worry about: if one source holds all the COVID images and another all the
# normals, "COVID or not" and "which source" are the same question.

# %%
explore.class_balance(dataset)

# %%
explore.class_balance(dataset, by="source")

# %%
figures.plot_class_balance(dataset);

# %% [markdown]
# **What to read.** A single source (as for the Radiography Database, whose manifest does not say
# which of its many web and hospital collections an image came from) hides the problem rather
# than solving it; several sources with very different COVID shares are a red flag.
#
# ## 3. Patients and images per patient
#
# Many datasets hold several images of one patient (follow-up films, several slices of one CT).
# Those images look alike: the same body, the same device, the same position.

# %%
explore.patients(dataset)

# %%
figures.plot_images_per_patient(dataset);

# %% [markdown]
# **What to read.** Every patient with two or more images can end up on both sides of an
# image-level split. Where patient ids are not published (the Radiography Database, folder
# datasets) the course gives each image its own id, so this table shows one image per patient:
# that means *unknown*, not *safe*.
#
# ## 4. Views, age and sex
#
# PA (standing, film behind the back) and AP (film in front, often a portable device at the
# bedside of a sicker patient) look different: the heart looks larger in AP. If COVID images are
# mostly AP and normals mostly PA, the view is a shortcut too. Age matters even more: children's
# chests look different from adults'.

# %%
explore.views(dataset)

# %%
explore.demographics(dataset)

# %%
figures.plot_demographics(dataset);

# %% [markdown]
# **What to read.** Look for differences between the classes that are not the disease: views,
# age range, sex ratio. "(not recorded)" is common: many public datasets publish none of this,
# which is a reason to be careful, not a reason to relax.
#
# ## 5. Image sizes, intensities and file formats
#
# `load_images` decodes every image once, converts it to grayscale, resizes it to
# `IMG_SIZE x IMG_SIZE` and caches it. `image_statistics` adds the original size, format and
# colour mode read from each file's header (cheap: nothing is decoded), and the mean intensity
# and contrast (standard deviation of the pixels) of every image.

# %%
images = load_images(dataset, IMG_SIZE)
stats = explore.image_statistics(dataset, images)
stats.groupby("label")[["width", "height", "kilobytes", "mean", "contrast"]].median()

# %%
figures.plot_image_statistics(dataset, stats, hue="label");

# %%
figures.plot_image_statistics(dataset, stats, hue="source");

# %% [markdown]
# **What to read.** Ideally the two classes (and the sources) overlap in every panel. Clusters of
# one colour in the size panel, or shifted intensity histograms, are properties of where the
# images came from (scanner, processing, a paper's figure), and a network notices them as easily
# as it notices the disease. The file format too:

# %%
explore.file_formats(dataset)

# %% [markdown]
# ## 6. What the images look like
#
# A few images per class, from different patients, titled with source and patient id; then the
# average image of each class. For CT datasets these are axial slices: lungs are the dark areas,
# COVID-19 shows as hazy ground-glass patches near the edge of the lungs.

# %%
figures.plot_sample_grid(dataset, images, n_per_class=5);

# %%
figures.plot_mean_images(dataset, images, by="label");

# %% [markdown]
# **What to read.** Look for anything that is not anatomy: text, arrows, rulers, letters ("L",
# "R"), borders, crops of a paper's figure. The difference image (red: brighter in the first
# class, blue: brighter in the second) shows where the classes differ *on average*. In a fair
# dataset that is the lungs; a bright patch in a corner means a label or tag that one class has.
#
# ## 7. Near-duplicates
#
# The same picture can appear twice: resized, recompressed, cropped, or uploaded by two papers.
# `near_duplicates` compares perceptual hashes (a 256-bit fingerprint of the coarse image: 16 x 16
# bits; chest images all look alike, and a 64-bit one cannot tell them apart) and
# groups images that are nearly identical. The course's split keeps each group on one side.

# %%
duplicates = near_duplicates(dataset)
pairs = explore.near_duplicate_pairs(dataset, groups=duplicates)
pairs.head(10)

# %%
figures.plot_near_duplicates(dataset, pairs);

# %% [markdown]
# **What to read.** `same_patient = False` with `same_split = True` means the split caught a
# duplicate that the patient ids missed. A duplicate in train and test is a question the model has
# already seen with its answer.
#
# A hash match is a *candidate*, to be checked by eye. On the synthetic sets it links images of
# different cartoon "patients" (even a COVID one with a NORMAL one): they are drawn from one
# template, and a fingerprint of the coarse image cannot tell them apart. Those are false alarms,
# which is why the course does not merge near-duplicates when it splits synthetic data. On real
# data, look at the pairs above: the same film at two sizes is a true duplicate; two different
# patients who merely look alike are not.
#
# ## 8. Experiment (a): an image-level split leaks patients
#
# Many early COVID-19 papers shuffled *images* into train and test. Then images of one patient
# sit on both sides, and the model can recognise the patient rather than the disease. Here we
# split the same data three ways (`test_fraction=0.2`) and count what crosses over:
# an image-level random split, a patient-level split, and the split this course uses (which
# also keeps near-duplicate groups together).

# %%
explore.leakage(dataset, test_fraction=0.2, duplicates=duplicates)

# %% [markdown]
# **What to read.** With the image-level split, a large share of the test images belong to
# patients the model has trained on: its test score measures memory, not diagnosis. The
# patient-level split leaks nothing, by construction. (On synthetic data the last column counts the
# false-alarm groups of section 7.) If every count is zero for every split,
# check `patients` above: with one image per patient id, leaks cannot be counted (only the
# near-duplicate column can still catch some). For COVID-CT, "this dataset's split" is the
# official split published with the data: any patient it shows on both sides is an id the course
# derived from file names (paper and page) that the official split files separate.
#
# ## 9. Experiment (b): can a tiny thumbnail tell where an image came from?
#
# A 16x16 thumbnail has no room for ground-glass opacities, but plenty for the overall
# brightness, borders, burnt-in text and body size that differ between hospitals. So we ask a
# plain logistic regression, cross-validated with folds grouped by patient:
#
# 1. can it predict the **source** from the thumbnail, or from four image statistics (width,
#    height, mean, contrast)?
# 2. for contrast: can it predict the **label** from the same features, and from the source alone?
#
# If (1) is easy and the source predicts the label, a deep network trained on this data can reach
# a high score by recognising the hospital. That is what DeGrave et al. (2021) found in models built the
# way published COVID-19 detectors were. First on this dataset (with only one source, it says so and predicts just the
# label):

# %%
summary = explore.shortcut_summary(dataset, images, stats=stats)
summary

# %%
figures.plot_predictability(dataset, summary);

# %% [markdown]
# ### A shortcut built on purpose: two synthetic "hospitals"
#
# The synthetic set with `marker=True` images most COVID patients at "hospital A", whose device
# burns a `PORTABLE` tag into the corner, and most normals at "hospital B" (sources
# `synthetic-a` and `synthetic-b`). Any model can now score without looking at the lungs.

# %%
if SHORTCUT_DEMO:
    marked = course_dataset("synthetic", smoke=SMOKE, marker=True)
    marked_images = load_images(marked, IMG_SIZE)
    display(explore.class_balance(marked, by="source"))

# %%
if SHORTCUT_DEMO:
    figures.plot_mean_images(marked, marked_images, by="source")

# %%
if SHORTCUT_DEMO:
    marked_summary = explore.shortcut_summary(marked, marked_images)
    display(marked_summary)
    figures.plot_predictability(marked, marked_summary)

# %% [markdown]
# **What to read.** The average images differ mostly in the corner, and the thumbnail tells the
# two hospitals apart almost perfectly. The source alone predicts the label well above the
# majority baseline, because the tag goes with COVID far more often than with NORMAL (the table of
# sources above counts it). A network trained on this
# set can look excellent and be reading the tag: notebook 05 tests exactly that, by masking the
# corner and by pasting the tag onto normal images.
#
# ### The classic mistake: adult COVID-19 images and children's normals
#
# Many early COVID-19 datasets took their COVID images from papers and websites (adults) and
# their normal images from the Kaggle "chest-xray-pneumonia" set (Kermany et al. 2018): children
# aged one to five from one hospital in Guangzhou. Children differ from adults in size, shape,
# bone density and positioning, the images in processing and format. A model trained on that mix
# learns "child or adult" and scores near-perfectly, and its result says nothing about COVID-19.
# This is why the course leaves the Radiography Database's 1,341 pediatric normals out by default
# (`include_pediatric=False`).
#
# In a full X-ray run the cell below rebuilds that mix on purpose (this dataset's COVID images,
# Kermany's normals; it downloads about 1.2 GB) and runs the same test. With `SMOKE=True` (or
# `SHORTCUT_DEMO=False`) it does nothing; on synthetic or CT data it says why it skipped.

# %%
mix = explore.pediatric_mix(dataset, max_per_class=MAX_PER_CLASS) if SHORTCUT_DEMO and not SMOKE else None
if mix is not None:
    mix_images = load_images(mix, IMG_SIZE)
    mix_summary = explore.shortcut_summary(mix, mix_images)
    display(mix_summary)
    figures.plot_predictability(mix, mix_summary)

# %% [markdown]
# **What to read.** On the mix, the source (adult or child) is predicted almost perfectly from
# the thumbnail, and the label as well: because they are the same thing. Compare the label AUC
# with the one on the adult-only dataset above. The course's tests run the same check on two small
# folders of real sample files (`ieee8023-mini`, adult COVID-19 images of Cohen et al., and
# `kermany-mini`, pediatric normals of Kermany et al.): on those sample files the source AUC from
# 16x16 thumbnails was about 0.99 when the test was written. That figure is from the sample files,
# not from this run.
#
# ## 10. CT: the file format as a shortcut
#
# CT datasets have their own traps. In COVID-CT (Zhao et al. 2020) the COVID slices were cut
# from figures in papers, the non-COVID ones mostly come from other collections: the classes
# differ in size, in processing (annotations, arrows, crops), and even in **file format**: the
# COVID images are PNG and most non-COVID images JPEG. A model may learn JPEG artefacts. The
# same test as above, with the file extension and colour mode as the only features:

# %%
explore.source_predictability(dataset, images, target="label", features=("file format",), stats=stats)

# %% [markdown]
# **What to read.** An AUC near 0.5 means the format says nothing about the label (the synthetic
# sets are all PNG). On COVID-CT it is far above 0.5: the extension alone predicts the label.
# Re-encoding every image to one format before training removes that particular shortcut (not the
# others). Also compare the CT sample grid with the X-rays above: slice level, window and crop
# vary from image to image.
#
# ## 11. What this means for augmentation: no horizontal flip
#
# Augmentation should produce images that could really occur. A horizontally flipped chest X-ray
# cannot: the heart sits on the patient's left (except in rare *situs inversus*), the aortic arch
# and the stomach bubble too, and the burnt-in side marker ("L"/"R") would read backwards. A flip
# teaches the model that anatomy has no side, and a flipped marker is one more thing to
# memorise. The course's augmentation uses small rotations, shifts, zooms and contrast changes
# only. The same holds for axial CT slices (left and right are fixed by convention).
#
# ## Key takeaways
# - Look at the data first: sources, patients, views, age, sizes, formats, duplicates.
# - Split by patient (and keep near-duplicates together). An image-level split puts the same
#   patients in train and test and inflates every metric.
# - If a 16x16 thumbnail predicts the source and the source predicts the label, a model can score
#   without seeing the disease. Positives and negatives must come from the same population and
#   the same hospitals, or the result must be checked on an external source (notebook 05).
# - Children are not adult controls: pediatric normals against adult COVID-19 measures age.
# - A difference between the classes in file format, size or processing is a shortcut too.
# - Do not flip chest images horizontally.
#
# ## Exercises
# 1. In experiment (a), change `test_fraction` to 0.5. Does the image-level split leak more or
#    fewer patients? Why?
# 2. Run `explore.source_predictability(marked, marked_images, features=("thumbnail",), size=4)`:
#    is a 4x4 thumbnail still enough to find the hospital? What about `size=32`?
# 3. With the synthetic marker set, predict the label from the thumbnail using only the images of
#    one hospital (`marked_images.manifest["source"] == "synthetic-b"`). How does the AUC compare
#    with the whole set, and why is that the fairer number?
# 4. Run the notebook with `DATASET = "synthetic-ct"` (or `"covid-ct"` online). Which tables
#    change, and what does the file-format test say?
#
# <details><summary>Solutions</summary>
#
# 1. More test images means more patients with images on both sides, but also fewer images left in
#    train: the count of leaked patients usually grows while the share of leaked test images stays
#    high. Either way only a patient-level split makes it zero.
# 2. Yes: the tag changes the average brightness of the top-right corner, which survives even in
#    4x4 pixels: the AUC stays high. Shortcuts need no detail, which is why they are learned first.
#    At 32x32 the result is the same.
# 3. Build a subset with `helpers.images.ImageSet(marked_images.images[keep],
#    marked_images.manifest[keep].reset_index(drop=True))` where `keep` is that boolean mask, and
#    call `explore.source_predictability(marked, subset, target="label", features=("thumbnail",))`.
#    Within one hospital the tag cannot help, so what is left is the disease signal: that is the
#    number a model should be judged on (for synthetic data it stays high, because the opacities
#    are strong by construction).
# 4. Views become "axial", age and sex are synthetic (COVID-CT publishes none), the sample grid
#    shows slices. On synthetic CT every file is PNG, so the file format predicts nothing (chance
#    level); on COVID-CT the extension alone separates most COVID from non-COVID slices.
# </details>
#
# ## References
# - Cohen, Morrison, Dao et al. (2020), *COVID-19 Image Data Collection: Prospective Predictions
#   Are the Future*. https://arxiv.org/abs/2006.11988 · data:
#   https://github.com/ieee8023/covid-chestxray-dataset
# - Kermany, Goldbaum, Cai et al. (2018), *Identifying Medical Diagnoses and Treatable Diseases by
#   Image-Based Deep Learning*, Cell 172(5). https://doi.org/10.1016/j.cell.2018.02.010 · data:
#   https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia
# - Roberts, Driggs, Thorpe et al. (2021), *Common pitfalls and recommendations for using machine
#   learning to detect and prognosticate for COVID-19 using chest radiographs and CT scans*,
#   Nature Machine Intelligence 3. https://doi.org/10.1038/s42256-021-00307-0
# - DeGrave, Janizek & Lee (2021), *AI for radiographic COVID-19 detection selects shortcuts over
#   signal*, Nature Machine Intelligence 3. https://doi.org/10.1038/s42256-021-00338-7
# - Zhao, Yang, He et al. (2020), *COVID-CT-Dataset: a CT scan dataset about COVID-19*.
#   https://arxiv.org/abs/2003.13865 · data: https://github.com/UCSD-AI4H/COVID-CT
# - Chowdhury, Rahman, Khandakar et al. (2020), *Can AI help in screening viral and COVID-19
#   pneumonia?*, IEEE Access 8. https://doi.org/10.1109/ACCESS.2020.3010287 · Rahman, Khandakar,
#   Qiblawey et al. (2021), *Exploring the effect of image enhancement techniques on COVID-19
#   detection using chest X-ray images*, Computers in Biology and Medicine 132.
#   https://doi.org/10.1016/j.compbiomed.2021.104319 · data (COVID-19 Radiography Database):
#   https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database
