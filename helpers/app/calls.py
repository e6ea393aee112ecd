"""One image's result and the words for it: every class's probability, the COVID call at its threshold.

A run's threshold is chosen on the validation split for COVID against the rest
(:mod:`helpers.runs`), for every task. The call (:func:`decide`) is the same rule
for two and three classes: COVID when the probability of COVID is at or above the
threshold, else the most probable of the other classes (NORMAL for the default
task, PNEUMONIA for ``covid-vs-pneumonia``, the larger of the two for
``three-class``). The most probable class is reported beside it: for three
classes the two can differ (P(COVID) the largest of three but below the
threshold, or above the threshold but not the largest).

Every number of a call is written with :func:`describe_call`, so a probability and
a threshold never look equal when the call depends on their difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helpers.constants import LABELS, POSITIVE


def decide(probabilities, threshold: float, classes: tuple[str, ...]) -> str:
    """COVID (the last class) when its probability is at or above ``threshold``, else the most probable other class."""
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities[-1] >= threshold:
        return classes[-1]
    return classes[int(np.argmax(probabilities[:-1]))]


@dataclass
class Prediction:
    """The result for one image. ``probability`` is the probability of COVID, ``label`` the call at ``threshold``.

    ``probabilities`` (three classes only; None for a binary model): every class's
    probability in class order, the model's own softmax scores.
    """

    file: str
    probability: float
    label: str  # decide(): COVID at or above ``threshold``, else the most probable other class
    threshold: float
    image: np.ndarray = field(repr=False)  # the decoded 2-D uint8 image, original size
    heatmap: np.ndarray | None = field(default=None, repr=False)  # explanation map, same size as ``image``
    explanation: str = "Grad-CAM"
    warnings: list[str] = field(default_factory=list)
    calibrated: bool = False  # probability and threshold through the run's temperature (fitted on val)
    classes: tuple[str, ...] = LABELS
    probabilities: dict[str, float] | None = None

    @property
    def margin(self) -> float:
        return self.probability - self.threshold

    @property
    def most_probable(self) -> str:
        """The class with the largest probability (for a binary model: COVID when P(COVID) > 0.5)."""
        scores = self.probabilities or dict(zip(self.classes, (1 - self.probability, self.probability), strict=True))
        return max(scores, key=scores.get)

    def to_json(self) -> dict:
        """The CLI's line: the binary fields; a three-class model adds ``probabilities`` and ``most_probable``."""
        line = {"file": self.file, "probability": round(self.probability, 6), "label": self.label,
                "threshold": round(self.threshold, 6), "margin": round(self.margin, 6), "calibrated": self.calibrated,
                "warnings": self.warnings}
        if self.probabilities is not None:
            line |= {"probabilities": {c: round(p, 6) for c, p in self.probabilities.items()},
                     "most_probable": self.most_probable}
        return line


def readable(probability: float, threshold: float) -> tuple[str, str]:
    """Both numbers with as many decimals (2 to 8) as it takes for them not to look equal when they differ."""
    for digits in range(2, 9):
        shown = f"{probability:.{digits}f}", f"{threshold:.{digits}f}"
        if shown[0] != shown[1]:
            return shown
    return shown


def describe_call(probability: float, threshold: float) -> str:
    """``probability 0.987 < threshold 0.990`` with the margin: the words every output uses for one call."""
    p, t = readable(probability, threshold)
    sign = ">=" if probability >= threshold else "<"
    return f"probability of {POSITIVE} {p} {sign} threshold {t}, margin {probability - threshold:+.{len(p) - 2}f}"


def shown_classes(probabilities: dict[str, float]) -> dict[str, str]:
    """Each class's probability with as many decimals (2 to 8) as it takes for different values not to look equal."""
    for digits in range(2, 9):
        shown = {c: f"{p:.{digits}f}" for c, p in probabilities.items()}
        if len(set(shown.values())) == len(set(probabilities.values())):
            break
    return shown


def describe_classes(probabilities: dict[str, float]) -> str:
    """``NORMAL 0.20, PNEUMONIA 0.30, COVID 0.50 (most probable: COVID)``."""
    best = max(probabilities, key=probabilities.get)
    return ", ".join(f"{c} {p}" for c, p in shown_classes(probabilities).items()) + f" (most probable: {best})"
