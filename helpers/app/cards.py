"""The HTML the upload demo shows: one result card per image, message cards, the probability bar, boxes.

Every number of a call is written with :func:`helpers.app.calls.describe_call`,
so a probability and a threshold never look equal when the label depends on
their difference. A three-class model's card adds a table of the three class
probabilities (the most probable highlighted) above the COVID bar and its
threshold, says that they are a teaching model's uncalibrated softmax scores, and
that its Grad-CAM explains COVID (not the most probable class). Images are drawn
in memory as base64 JPEG, never saved.
"""

from __future__ import annotations

import base64
import html
import io

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from helpers.app.calls import Prediction, describe_call, readable, shown_classes
from helpers.app.predict import ModelInfo

DISPLAY_SIDE = 512  # longest side of the images drawn in a result card
THRESHOLD_MEANING = ("chosen on the validation split to balance sensitivity and specificity; "
                     "at or above it the model calls the image COVID")
EXPLANATIONS = {
    "Grad-CAM": ("Grad-CAM colours the regions that pushed the score towards COVID (red: most). It shows where "
                 "the model looked, not where disease is; colour on the borders, corners or text is a warning sign."),
    "occlusion sensitivity": (
        "Occlusion sensitivity: this model (VGG16 features + a classifier on top) has no gradient to follow, so each "
        "of 5 x 5 squares was covered with gray in turn; red squares lowered the COVID score most when covered. It is "
        "coarse (25 squares), shows what the score depends on, not where disease is, and misses evidence spread "
        "over several squares."),
}
COVID_EXPLAINED = ("For this three-class model the map explains COVID, that is the log-odds of COVID against "
                   "NORMAL and PNEUMONIA (the number the COVID call thresholds), not the most probable class.")
COVID_CALL = "The COVID call: the probability of COVID against its threshold (COVID against the other classes)"
MULTICLASS_THRESHOLD = " (COVID against the other classes); below it, the most probable of the others"
CLASS_SCORES = ("What these numbers are: the scores of a teaching model, its softmax over the {n} classes it was "
                "trained on. They sum to 1, so an image of anything else still gets {n} numbers that sum to 1. "
                "They are not a diagnosis, and they are not calibrated (the run's temperature was fitted for "
                "COVID against the rest only): do not read them as risks.")
SYNTHETIC_WARNING = ("SYNTHETIC MODEL: trained on generated cartoon images, not real patients. "
                     "Its output on a real image means nothing.")
UNKNOWN_DATA = "Whether this model was trained on synthetic data is unknown (no metrics.json next to it)."
COLOURS = {"COVID": "#c0392b", "NORMAL": "#2e7d32", "PNEUMONIA": "#b9770e"}
RED, YELLOW = ("#f8d7da", "#721c24"), ("#fff3cd", "#856404")
CALIBRATION = {True: "Probability and threshold calibrated on the validation split (temperature scaling).",
               False: "The model's own score, not calibrated: do not read it as a risk."}


def result_card(prediction: Prediction, info: ModelInfo) -> str:
    """Image and explanation on the left; the class table (three classes), the COVID bar, the threshold and what
    it means, warnings on the right."""
    p, colour = prediction, COLOURS.get(prediction.label, "#555")
    low = p.classes[0] if len(p.classes) == 2 else "not COVID"
    scores = CLASS_SCORES.format(n=len(p.classes)) if p.probabilities else CALIBRATION[p.calibrated]
    explained = f" {COVID_EXPLAINED}" if p.probabilities and p.explanation == "Grad-CAM" else ""
    details = [
        class_table(p.probabilities) + f"<div style='color:#555;margin-top:8px'>{COVID_CALL}</div>" if p.probabilities else "",
        probability_bar(p.probability, p.threshold, colour=COLOURS["COVID"] if p.probabilities else colour, low=low),
        f"<p>Threshold {readable(p.probability, p.threshold)[1]}: {threshold_meaning(info)}.</p>",
        f"<p class='demo-scores' style='color:#555'>{scores}</p>",
        f"<p style='color:#555'>{EXPLANATIONS[p.explanation]}{explained}</p>" if p.heatmap is not None else "",
        warnings_html(p.warnings),
    ]
    return card(
        f"<b>{html.escape(p.file)}</b>: the model <i>{html.escape(info.label)}</i> says "
        f"<b class='demo-label' style='color:{colour}'>{p.label}</b> "
        f"(<span class='demo-call'>{html.escape(describe_call(p.probability, p.threshold))}</span>)"
        + data_note(info)
        + "<div style='display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start'>"
        f"<img class='demo-figure' alt='{p.explanation}' src='data:image/jpeg;base64,{figure_jpeg(p)}' "
        "style='max-width:100%'>"
        f"<div style='flex:1;min-width:260px'>{''.join(details)}</div></div>"
    )


def message_card(name: str, message: str) -> str:
    """A friendly message for an upload that could not be predicted."""
    return card(f"<b>{html.escape(name)}</b>: could not use this file.<br>{html.escape(message)}",
                border="#c0392b", kind="demo-message")


def data_note(info: ModelInfo) -> str:
    """The loud synthetic warning, or the note that nobody knows; nothing for a model of real data."""
    if info.synthetic:
        return box(f"<b>{SYNTHETIC_WARNING}</b>", *RED)
    return box(UNKNOWN_DATA, *YELLOW) if info.synthetic is None else ""


def threshold_meaning(info: ModelInfo) -> str:
    more = MULTICLASS_THRESHOLD if info.multiclass else ""
    if info.metrics.get("threshold") is None:
        return f"{info.threshold_note}; at or above it the model calls the image COVID{more}"
    return THRESHOLD_MEANING + more


def class_table(probabilities: dict[str, float]) -> str:
    """One row per class in class order: name, a bar, the probability; the most probable row highlighted."""
    best, shown = max(probabilities, key=probabilities.get), shown_classes(probabilities)
    rows = []
    for name, value in probabilities.items():
        top = name == best
        style = "font-weight:bold;background:#eef3ff" if top else ""
        rows.append(
            f"<tr class='demo-class{' demo-most-probable' if top else ''}' style='{style}'>"
            f"<td style='padding:2px 6px'>{html.escape(name)}{' (most probable)' if top else ''}</td>"
            "<td style='width:60%;padding:2px 6px'><div style='height:12px;background:#eee;border-radius:3px'>"
            f"<div style='width:{100 * value:.1f}%;height:100%;background:{COLOURS.get(name, '#555')};"
            "border-radius:3px'></div></div></td>"
            f"<td class='demo-class-probability' style='padding:2px 6px;text-align:right'>{shown[name]}</td></tr>")
    return ("<table class='demo-classes' style='border-collapse:collapse;width:100%;margin:4px 0'>"
            "<caption style='text-align:left;color:#555'>Probability of each class</caption>"
            f"{''.join(rows)}</table>")


def probability_bar(probability: float, threshold: float, *, colour: str = "#555", low: str = "NORMAL") -> str:
    """A horizontal bar filled to ``probability`` (of COVID) with a dashed line at ``threshold``; ``low`` names 0."""
    shown_p, shown_t = readable(probability, threshold)
    return (
        "<div style='position:relative;height:18px;background:#eee;border-radius:3px;margin:6px 0'>"
        f"<div style='width:{100 * probability:.1f}%;height:100%;background:{colour};border-radius:3px'></div>"
        f"<div title='threshold' style='position:absolute;left:{100 * threshold:.1f}%;top:-4px;bottom:-4px;"
        "border-left:2px dashed #000'></div></div>"
        "<div style='display:flex;justify-content:space-between;font-size:80%;color:#555'>"
        f"<span>0 ({html.escape(low)})</span><span>bar: {shown_p}; dashed line: threshold {shown_t}</span><span>1 (COVID)</span>"
        "</div>"
    )


def warnings_html(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return box(f"<b>Is this the right kind of image?</b><ul style='margin:4px 0'>{items}</ul>", *YELLOW)


def figure_jpeg(prediction: Prediction) -> str:
    """The image next to its explanation overlay, as a base64 JPEG drawn in memory (at most DISPLAY_SIDE px)."""
    from helpers.plots import plot_gradcam_grid

    image = Image.fromarray(prediction.image)
    image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    gray = np.asarray(image)
    size = f"uploaded ({prediction.image.shape[1]}x{prediction.image.shape[0]} px)"
    if prediction.heatmap is None:
        fig = plot_gradcam_grid([gray], [None], [size])
    else:
        fig = plot_gradcam_grid([gray, gray], [None, prediction.heatmap], [size, prediction.explanation])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=80, pil_kwargs={"quality": 85})
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def box(content: str, background: str, colour: str) -> str:
    return (f"<div style='background:{background};color:{colour};padding:6px 10px;border-radius:4px;margin:4px 0'>"
            f"{content}</div>")


def card(content: str, *, border: str = "#bbb", kind: str = "demo-result") -> str:
    return (f"<div class='demo-card {kind}' style='border:1px solid {border};border-radius:6px;padding:8px 12px;"
            f"margin:8px 0;max-width:920px'>{content}</div>")
