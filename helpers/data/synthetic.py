"""Synthetic chest X-rays and CT slices, generated offline and deterministically.

They let every notebook run without a download, in CI and on a laptop, and
they give the tests a dataset whose answer is known. They are cartoons, not
medicine: thorax, lung fields, ribs, heart and spine on a noisy film, a
per-patient anatomy and several images per patient. COVID images add
bilateral, peripheral, lower-zone ground-glass opacities of varying strength;
CT slices add peripheral (subpleural) patches. For the tasks with a pneumonia class
(``class_shares``), PNEUMONIA images add what the radiology literature describes for
bacterial (lobar) pneumonia instead: a dense, well-defined consolidation in one lung, in
one lobe, with air bronchograms (dark branching lines inside it); on CT a dense unilateral
consolidation. The default (two classes) draws exactly the images it always drew. With ``marker=True`` most COVID
images carry a corner tag that most NORMAL images lack: a "hospital" shortcut
for the lesson in notebooks 01 and 05.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

GENERATOR_VERSION = 2  # 2: a lung mask per image
MARKER_TEXT = "PORTABLE"


@dataclass(frozen=True)
class Anatomy:
    """What stays the same across one patient's images."""

    lung_dx: float  # half distance between the lung centres
    lung_rx: float
    lung_ry: float
    heart_r: float
    rib_frequency: float
    body_width: float
    brightness: float


def _anatomy(rng: np.random.Generator) -> Anatomy:
    return Anatomy(
        lung_dx=rng.uniform(0.34, 0.42),
        lung_rx=rng.uniform(0.22, 0.29),
        lung_ry=rng.uniform(0.48, 0.60),
        heart_r=rng.uniform(0.20, 0.28),
        rib_frequency=rng.uniform(20, 26),
        body_width=rng.uniform(0.80, 0.92),
        brightness=rng.uniform(0.9, 1.1),
    )


def _grid(size: int, rng: np.random.Generator, jitter: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in [-1, 1], shifted and rotated a little per image."""
    axis = np.linspace(-1, 1, size)
    xx, yy = np.meshgrid(axis, axis)
    angle = rng.uniform(-jitter, jitter) * 0.1
    dx, dy = rng.uniform(-jitter, jitter, 2) * 0.05
    x = np.cos(angle) * xx - np.sin(angle) * yy + dx
    y = np.sin(angle) * xx + np.cos(angle) * yy + dy
    return x, y


def _ellipse(x, y, cx, cy, rx, ry, softness=0.08) -> np.ndarray:
    """A soft-edged ellipse mask in [0, 1]."""
    r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return np.clip((1 - r) / softness, 0, 1)


def _blob(x, y, cx, cy, radius) -> np.ndarray:
    return np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2)))


def _opacities(x, y, rng, severity: float, centres: list[tuple[float, float]], radius: tuple[float, float]):
    """Ground-glass opacities: a few soft blobs around each (bilateral) centre."""
    haze = np.zeros_like(x)
    for cx, cy in centres:
        for _ in range(rng.integers(2, 5)):
            px, py = cx + rng.normal(0, 0.06), cy + rng.normal(0, 0.07)
            haze += _blob(x, y, px, py, rng.uniform(*radius)) * rng.uniform(0.6, 1.0)
    return severity * np.clip(haze, 0, 1.3)


@dataclass(frozen=True)
class Consolidation:
    """A lobar consolidation: one lung, one lobe, one density (the same in all of a patient's images)."""

    side: int  # -1: the lung on the image's left, +1: on its right
    height: float  # the lobe's centre, -0.35 (upper) to 0.3 (lower)
    density: float


def consolidation(rng: np.random.Generator) -> Consolidation:
    """A patient's pneumonia: a side, a lobe and a density, drawn once per patient."""
    return Consolidation(int(rng.choice([-1, 1])), float(rng.choice([-0.35, 0.0, 0.3])), float(rng.uniform(0.22, 0.4)))


def _consolidate(x, y, rng, lesion: Consolidation, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """A dense, well-defined opacity with a few air bronchograms (dark lines) inside it."""
    patch = _ellipse(x, y, cx, cy, rx, ry, softness=0.25)
    bronchi = np.zeros_like(x)
    for _ in range(rng.integers(2, 4)):
        angle = rng.uniform(np.pi / 4, 3 * np.pi / 4)
        offset = rng.normal(0, rx / 3)  # branches beside each other, not through one centre
        distance = np.abs((x - cx) * np.sin(angle) - (y - cy) * np.cos(angle) - offset)
        bronchi = np.maximum(bronchi, np.exp(-(distance / 0.012) ** 2))
    return lesion.density * patch * (1 - 0.6 * bronchi)


def _xray(
    rng, anatomy: Anatomy, severity: float, size: int, lesion: Consolidation | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    x, y = _grid(size, rng, jitter=1.0)
    a = anatomy
    body = _ellipse(x, y, 0, 0.15, a.body_width, 1.05, 0.15)
    image = 0.06 + 0.42 * body
    lungs = np.maximum(
        _ellipse(x, y, -a.lung_dx, -0.05, a.lung_rx, a.lung_ry),
        _ellipse(x, y, a.lung_dx, -0.05, a.lung_rx, a.lung_ry),
    )
    image -= 0.33 * lungs * (0.9 + 0.2 * (y + 1) / 2)
    ribs = (np.sin(a.rib_frequency * (y + 0.35 * x**2)) > 0.55).astype(float)
    image += 0.08 * ribs * body
    image += 0.25 * _ellipse(x, y, 0, 0.1, 0.07, 0.95, 0.2)  # spine and mediastinum
    image += 0.30 * _ellipse(x, y, 0.12, 0.28, a.heart_r, a.heart_r * 1.1, 0.25) * lungs.clip(0.3, 1)
    image += 0.25 * np.clip((y - 0.5) * 4, 0, 1) * body  # diaphragm and abdomen
    if severity > 0:
        centres = [(-a.lung_dx - 0.08, 0.25), (a.lung_dx + 0.08, 0.25)]  # lower zones, peripheral
        image += _opacities(x, y, rng, severity, centres, radius=(0.06, 0.12)) * lungs
    if lesion is not None:
        cx, cy = lesion.side * a.lung_dx + rng.normal(0, 0.03), lesion.height + rng.normal(0, 0.04)
        image += _consolidate(x, y, rng, lesion, cx, cy, rng.uniform(0.13, 0.19), rng.uniform(0.14, 0.22)) * lungs
    image = image * a.brightness * rng.uniform(0.9, 1.1) + rng.normal(0, 0.03, image.shape)
    return image, lungs


def _ct(
    rng, anatomy: Anatomy, severity: float, size: int, lesion: Consolidation | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    x, y = _grid(size, rng, jitter=0.5)
    a = anatomy
    level = rng.uniform(0.8, 1.1)  # slice height changes the lung size
    body = _ellipse(x, y, 0, 0.05, 0.92 * a.body_width / 0.86, 0.68, 0.05)
    image = 0.02 + 0.55 * body
    lungs = np.maximum(
        _ellipse(x, y, -0.38, -0.02, 0.30 * level, 0.45 * level, 0.05),
        _ellipse(x, y, 0.38, -0.02, 0.30 * level, 0.45 * level, 0.05),
    )
    image -= 0.50 * lungs
    vessels = sum(_blob(x, y, *rng.uniform(-0.6, 0.6, 2), 0.012) for _ in range(40))
    image += 0.25 * np.clip(vessels, 0, 1) * lungs
    image += 0.25 * _ellipse(x, y, 0.05, 0.05, a.heart_r * 0.9, a.heart_r * 0.8, 0.2)
    image += 0.35 * _ellipse(x, y, 0, 0.55, 0.09, 0.08, 0.1)  # vertebra
    if severity > 0:
        centres = [(-0.38 - 0.22 * level, 0.15), (0.38 + 0.22 * level, 0.15), (-0.5, -0.2), (0.5, -0.2)]
        image += 0.8 * _opacities(x, y, rng, severity, centres, radius=(0.05, 0.10)) * lungs
    if lesion is not None:  # dense and unilateral, posterior (dependent) part of one lung
        cx, cy = lesion.side * 0.38 + rng.normal(0, 0.04), 0.2 + rng.normal(0, 0.05)
        image += 1.2 * _consolidate(x, y, rng, lesion, cx, cy, rng.uniform(0.14, 0.2), rng.uniform(0.14, 0.2)) * lungs
    image = image * rng.uniform(0.95, 1.05) + rng.normal(0, 0.025, image.shape)
    return image, lungs


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _add_marker(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Burn a small white text tag into the top-right corner, as some hospitals' devices do."""
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    size = pixels.shape[0]
    box = (int(size * 0.62), int(size * 0.04), int(size * 0.96), int(size * 0.12))
    draw.rectangle(box, fill=int(rng.uniform(220, 255)))
    draw.text((box[0] + 2, box[1]), MARKER_TEXT, fill=0)
    return np.asarray(image)


def make_image_and_mask(
    *, modality: str = "xray", covid: bool, severity: float | None = None, marker: bool = False,
    size: int = 256, seed: int = 0, anatomy: Anatomy | None = None, pneumonia: Consolidation | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image and its lung mask (255 inside the lung fields, 0 outside), both ``uint8``.

    ``pneumonia`` (with ``covid=False``) adds that lobar consolidation: a PNEUMONIA image.
    """
    rng = np.random.default_rng(seed)
    anatomy = anatomy or _anatomy(rng)
    if severity is None:
        severity = rng.uniform(0.12, 0.35) if covid else 0.0
    draw = _xray if modality == "xray" else _ct
    image, lungs = draw(rng, anatomy, severity if covid else 0.0, size, None if covid else pneumonia)
    pixels, mask = _to_uint8(image), np.where(lungs > 0.5, 255, 0).astype(np.uint8)
    return (_add_marker(pixels, rng) if marker else pixels), mask


def make_image(**options) -> np.ndarray:
    """One synthetic image as a ``uint8`` array (the options of :func:`make_image_and_mask`); for figures and tests."""
    return make_image_and_mask(**options)[0]


def options_key(**options) -> str:
    """A short hash of the generator options and version (the dataset folder name)."""
    text = json.dumps({"version": GENERATOR_VERSION, **options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def generate(
    out_dir: Path, *, modality: str = "xray", n_patients: int = 120, images_per_patient: tuple[int, int] = (1, 4),
    size: int = 256, covid_fraction: float = 0.45, marker: bool = False, marker_rate: float = 0.9, seed: int = 0,
    severity_scale: float = 1.0, class_shares: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Write a synthetic dataset under ``out_dir/images`` (lung masks under ``out_dir/masks``), return its rows.

    Patient ``i`` is drawn from its own random stream (``seed``, ``i``), so the
    same options always give the same images. With ``marker=True`` a COVID image
    carries the corner tag with probability ``marker_rate`` and a NORMAL image
    with ``1 - marker_rate``; the tag stands for a hospital's device, so the
    ``source`` column then names two "hospitals" (``-a`` tagged, ``-b`` not).
    ``severity_scale`` multiplies the strength of the opacities (below 1: a fainter disease signal).
    ``class_shares`` (``{"NORMAL": .., "PNEUMONIA": .., "COVID": ..}``) replaces ``covid_fraction`` for
    the tasks with a pneumonia class; the same draw picks the class, so the default is unchanged.
    """
    if modality not in ("xray", "ct"):
        raise ValueError(f"modality must be 'xray' or 'ct', not {modality!r}")
    for folder in ("images", "masks"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    source = "synthetic" if modality == "xray" else "synthetic-ct"
    rows = []
    for patient in range(n_patients):
        rng = np.random.default_rng([seed, patient])
        label = _draw_label(rng.random(), covid_fraction, class_shares)
        covid = label == "COVID"
        anatomy = _anatomy(rng)
        lesion = consolidation(rng) if label == "PNEUMONIA" else None
        severity = severity_scale * rng.uniform(0.12, 0.35) if covid else 0.0
        sex, age = rng.choice(["M", "F"]), int(rng.integers(20, 90))
        view = rng.choice(["PA", "AP"]) if modality == "xray" else "axial"
        for k in range(int(rng.integers(images_per_patient[0], images_per_patient[1] + 1))):
            has_marker = marker and rng.random() < (marker_rate if covid else 1 - marker_rate)
            pixels, mask = make_image_and_mask(
                modality=modality, covid=covid, severity=severity * rng.uniform(0.7, 1.3), marker=has_marker,
                size=size, seed=int(rng.integers(2**31)), anatomy=anatomy, pneumonia=lesion,
            )
            name = f"{source}-p{patient:04d}-{k}.png"
            Image.fromarray(pixels).save(out_dir / "images" / name)
            Image.fromarray(mask).save(out_dir / "masks" / name)
            rows.append({
                "path": f"images/{name}", "label": label,
                "patient_id": f"{source}:{patient:04d}",
                "source": f"{source}-{'a' if has_marker else 'b'}" if marker else source, "modality": modality,
                "view": view, "sex": sex, "age": age, "marker": has_marker, "mask": f"masks/{name}",
            })
    return pd.DataFrame(rows)


def _draw_label(u: float, covid_fraction: float, class_shares: dict[str, float] | None) -> str:
    """The class of uniform draw ``u``: COVID below ``covid_fraction`` (the default), else by cumulative shares."""
    if class_shares is None:
        return "COVID" if u < covid_fraction else "NORMAL"
    total, edge = sum(class_shares.values()), 0.0
    for label, share in class_shares.items():
        edge += share / total
        if u < edge:
            return label
    return label
