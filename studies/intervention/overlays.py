"""Explanation and uncertainty maps of an image as stored by the precompute, and their rendering
as coloured, translucent PNG overlays (numpy + PIL + matplotlib's colour maps; no torch).

A map in [0, 1] at the classifier's input size is resized bilinearly to the image size, coloured
with a perceptual colour map (`inferno` for explanations, `viridis` for uncertainty) and given
alpha = `max_alpha` * value, so low values leave the image visible.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from interventions.analyses import OVERLAYS
from studies.core.dispatch import run_interactive
from studies.models import ImageAnalysis

# (analysis method, array name in its .npz) and colour map of each map a page can show, from the
# analyses registry
MAP_SOURCES: dict[str, tuple[str, str]] = {n: (o.method, o.array) for n, o in OVERLAYS.items()}
COLOUR_MAPS: dict[str, str] = {n: o.colour_map for n, o in OVERLAYS.items()}


def load_npz(analysis: ImageAnalysis) -> dict[str, np.ndarray]:
    """Every array of an analysis's .npz file."""
    if not analysis.maps:
        return {}
    with analysis.maps.open("rb") as handle:
        data = np.load(io.BytesIO(handle.read()), allow_pickle=False)
        return {k: data[k] for k in data.files}


def stored_map(image_id: int, spec_id: int, name: str) -> np.ndarray | None:
    """The precomputed map `name` (a MAP_SOURCES key) of an image, or None when not stored yet."""
    if name not in MAP_SOURCES:
        raise ValueError(f"unknown map {name!r}; choose one of {', '.join(MAP_SOURCES)}")
    method, key = MAP_SOURCES[name]
    analysis = ImageAnalysis.objects.filter(
        image_id=image_id, model_id=spec_id, method=method
    ).first()
    if analysis is None:
        return None
    return load_npz(analysis).get(key)


def live_map(image_id: int, spec_id: int, name: str) -> np.ndarray:
    """Stored map, else Grad-CAM / VOICE computed by an `interactive` task (the overlay maps)."""
    found = stored_map(image_id, spec_id, name)
    if found is not None:
        return found
    if name not in ("gradcam", "voice"):
        raise LookupError(f"the {name} map of image {image_id} is not precomputed yet")
    maps = run_interactive(
        "workers.intervention_tasks.predict_image_maps", [spec_id, image_id], what=name
    )
    return np.asarray(maps["gradcam" if name == "gradcam" else "uncertainty"], dtype=np.float32)


def overlay_png(
    values: np.ndarray, width: int, height: int, colour_map: str = "inferno", max_alpha: float = 0.7
) -> bytes:
    """RGBA PNG (width x height): colour_map(v) with alpha max_alpha * v for a map v in [0, 1]."""
    from matplotlib import colormaps

    m = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    if m.ndim != 2:
        raise ValueError(f"a map must be 2-D, got shape {m.shape}")
    if m.shape != (height, width):
        m = np.asarray(Image.fromarray(m, mode="F").resize((width, height), Image.BILINEAR))
    m = np.clip(m, 0.0, 1.0)
    rgba = colormaps[colour_map](m)
    rgba[..., 3] = max_alpha * m
    buffer = io.BytesIO()
    Image.fromarray((rgba * 255).round().astype(np.uint8), mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()
