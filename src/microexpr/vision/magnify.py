"""Motion magnification of an onset → apex pair: Eulerian (linear, Laplacian pyramid) and a plug-in point for
learning-based magnifiers.

**Convention for ``alpha``:** the *total* factor on the onset → apex motion. A feature displaced by δ between
onset and apex is displaced by ≈ alpha·δ (from the onset) in the magnified frame, i.e. the apex's own motion
plus (alpha − 1)·δ extra. This is the meaning of the factor in learning-based magnification (Oh et al. 2018), as
used by SAMER ("amplification factor 6"), so the two magnifiers are interchangeable. Wu et al.'s (2012) α is the
*added* amplification: α_Wu = alpha − 1.

Every magnifier is a callable ``(onset, apex) -> magnified apex`` built by a factory registered under a name:
``get_magnifier("eulerian", alpha=6.0)``. See ``register_magnifier`` for adding a learned one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Literal

import cv2
import numpy as np

Magnifier = Callable[[np.ndarray, np.ndarray], np.ndarray]
MagnifierFactory = Callable[..., Magnifier]

#: entry-point group scanned by ``get_magnifier`` for magnifiers provided by other installed packages
ENTRY_POINT_GROUP = "microexpr.magnifiers"


# ---------------------------------------------------------------------------------------------------------------
# Laplacian pyramid
# ---------------------------------------------------------------------------------------------------------------


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` band-pass images (finest first) followed by the low-pass residual, float32.

    Band k is image_k − pyrUp(pyrDown(image_k)) with image_0 the input; ``collapse_pyramid`` inverts it exactly.
    """
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    smallest = min(image.shape[:2])
    if smallest < 2**levels:
        raise ValueError(f"{levels} pyramid levels need a side of at least {2**levels} px, got {smallest}")
    current = np.asarray(image, dtype=np.float32)
    bands = []
    for _ in range(levels):
        down = cv2.pyrDown(current)
        bands.append(current - cv2.pyrUp(down, dstsize=(current.shape[1], current.shape[0])))
        current = down
    bands.append(current)
    return bands


def collapse_pyramid(bands: Sequence[np.ndarray]) -> np.ndarray:
    """Reconstruct the image from ``laplacian_pyramid`` output."""
    current = bands[-1]
    for band in reversed(bands[:-1]):
        current = cv2.pyrUp(current, dstsize=(band.shape[1], band.shape[0])) + band
    return current


def band_gains(
    alpha: float,
    levels: int,
    *,
    lambda_c: float | None = None,
    finest_weight: float = 0.0,
    residual_weight: float = 1.0,
) -> np.ndarray:
    """Extra gain per pyramid band (finest first, residual last) applied to the apex − onset difference.

    Each band gets (alpha − 1) × its weight: ``finest_weight`` for band 0 (mostly sensor noise and JPEG
    artefacts; 0 as in Wu et al.'s reference), ``residual_weight`` for the low-pass residual (it also carries
    global illumination change, e.g. flicker), 1 otherwise. With ``lambda_c`` (px), bands whose representative
    wavelength λ_k = 2^(k+2) px is short are attenuated so the magnified motion stays within the first-order
    (linear) bound (alpha)·δ < λ/8 (Wu et al. 2012, §3.2): gain_k = min(alpha − 1, alpha·λ_k/λ_c − 1), ≥ 0.
    """
    if alpha < 1.0:
        raise ValueError(f"alpha is the total motion factor and must be >= 1, got {alpha}")
    extra = np.full(levels + 1, alpha - 1.0)
    if lambda_c is not None:
        if lambda_c <= 0:
            raise ValueError(f"lambda_c must be positive, got {lambda_c}")
        wavelengths = 2.0 ** (np.arange(levels + 1) + 2)
        extra = np.clip(np.minimum(extra, alpha * wavelengths / lambda_c - 1.0), 0.0, None)
    extra[-1] *= residual_weight
    if levels > 0:
        extra[0] *= finest_weight
    return extra


# ---------------------------------------------------------------------------------------------------------------
# Eulerian magnification
# ---------------------------------------------------------------------------------------------------------------


def _to_ycrcb(image: np.ndarray, color: Literal["rgb", "bgr"]) -> np.ndarray:
    code = cv2.COLOR_RGB2YCrCb if color == "rgb" else cv2.COLOR_BGR2YCrCb
    return cv2.cvtColor(image / np.float32(255.0), code) * np.float32(255.0)


def _from_ycrcb(image: np.ndarray, color: Literal["rgb", "bgr"]) -> np.ndarray:
    code = cv2.COLOR_YCrCb2RGB if color == "rgb" else cv2.COLOR_YCrCb2BGR
    return cv2.cvtColor(image / np.float32(255.0), code) * np.float32(255.0)


def eulerian_magnify(
    onset: np.ndarray,
    apex: np.ndarray,
    alpha: float = 6.0,
    levels: int = 4,
    *,
    lambda_c: float | None = None,
    finest_weight: float = 0.0,
    residual_weight: float = 1.0,
    chroma_weight: float = 0.1,
    color: Literal["rgb", "bgr"] = "rgb",
    out_dtype: type | None = None,
) -> np.ndarray:
    """Linear Eulerian magnification (Wu et al. 2012) of the onset → apex motion; returns the magnified apex.

    With two frames the temporal filter of Eulerian video magnification reduces to the difference
    D = apex − onset. D is split into a Laplacian pyramid (``levels`` bands + residual, cv2.pyrDown/pyrUp) and the
    output is apex + Σ_k gain_k·band_k(D) (``band_gains``). By the first-order Taylor argument of Wu et al., a
    small displacement δ becomes ≈ alpha·δ (module docstring). With all gains equal this is the pixel-wise
    extrapolation onset + alpha·D; the pyramid exists to attenuate the finest band (noise), the residual
    (illumination), and short wavelengths (``lambda_c``), where linear magnification breaks down.

    Colour frames are processed in YCrCb, chroma differences scaled by ``chroma_weight`` (Wu's chrominance
    attenuation), so skin-colour changes are not amplified like motion. Input uint8 or float 0–255, grey or
    3-channel; output ``out_dtype`` (default: the apex's dtype), uint8 is rounded and clipped.
    """
    onset_f = np.asarray(onset, dtype=np.float32)
    apex_f = np.asarray(apex, dtype=np.float32)
    if onset_f.shape != apex_f.shape:
        raise ValueError(f"onset and apex differ in shape: {onset_f.shape} vs {apex_f.shape}")
    gains = band_gains(
        alpha, levels, lambda_c=lambda_c, finest_weight=finest_weight, residual_weight=residual_weight
    )
    colour = apex_f.ndim == 3 and apex_f.shape[2] == 3
    if colour:
        onset_f, apex_f = _to_ycrcb(onset_f, color), _to_ycrcb(apex_f, color)
    bands = laplacian_pyramid(apex_f - onset_f, levels)
    boost = collapse_pyramid([band * np.float32(g) for band, g in zip(bands, gains, strict=True)])
    if colour:
        boost[..., 1:] *= np.float32(chroma_weight)
    result = apex_f + boost
    if colour:
        result = _from_ycrcb(result, color)
    dtype = np.dtype(out_dtype) if out_dtype is not None else np.asarray(apex).dtype
    if dtype == np.uint8:
        return np.clip(np.rint(result), 0, 255).astype(np.uint8)
    return result.astype(dtype)


# ---------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------


class MagnifierUnavailableError(RuntimeError):
    """The named magnifier needs something this installation does not have (e.g. model weights)."""


def _eulerian_factory(**config: object) -> Magnifier:
    return functools.partial(eulerian_magnify, **config)


LEARNED_HELP = """\
No learning-based magnifier is bundled with microexpr. SAMER (Mimicking the annotation process, MM'22) uses
Learning-based Video Motion Magnification (Oh et al., ECCV 2018) at factor 6, but that network's trained weights
are a third-party checkpoint that microexpr neither ships nor downloads. To use it (or any other learned
magnifier), register a factory that loads your own checkpoint before the pipeline runs, e.g. in your
project's settings.py or a Kedro hook:

    from microexpr.vision.magnify import register_magnifier

    def my_learned_factory(checkpoint: str, alpha: float = 6.0, device: str = "cuda"):
        model = load_my_magnification_net(checkpoint, device)        # your code
        def magnify(onset, apex):                                      # (H, W, 3) uint8 -> (H, W, 3) uint8
            return model.magnify(onset, apex, alpha)                   # alpha = total factor on onset->apex
        return magnify

    register_magnifier("learned", my_learned_factory, overwrite=True)

or expose the factory from an installed package under the entry-point group "microexpr.magnifiers"
(name = "learned"), then select "learned" (with its config, e.g. checkpoint and alpha) in the preprocessing
parameters. Until then use "eulerian" (linear Eulerian magnification), a documented deviation from SAMER."""


def _learned_unavailable(**config: object) -> Magnifier:
    raise MagnifierUnavailableError(LEARNED_HELP)


_REGISTRY: dict[str, MagnifierFactory] = {"eulerian": _eulerian_factory, "learned": _learned_unavailable}
_BUILTIN_PLACEHOLDERS = {"learned"}


def register_magnifier(name: str, factory: MagnifierFactory, *, overwrite: bool = False) -> None:
    """Register ``factory(**config) -> magnifier`` under ``name``; a magnifier maps (onset, apex) to the
    magnified apex (same shape and dtype), with ``alpha`` the total onset → apex factor (module docstring).

    Re-registering an existing name needs ``overwrite=True``, except for the "learned" placeholder, which exists
    only to explain how to provide one.
    """
    if name in _REGISTRY and not overwrite and name not in _BUILTIN_PLACEHOLDERS:
        raise ValueError(
            f"a magnifier named {name!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[name] = factory
    _BUILTIN_PLACEHOLDERS.discard(name)


def _entry_point_factory(name: str) -> MagnifierFactory | None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            return entry.load()
    return None


def available_magnifiers() -> list[str]:
    """Names registered in this process plus those advertised by installed packages' entry points."""
    names = set(_REGISTRY) | {entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


def get_magnifier(name: str, **config: object) -> Magnifier:
    """Build the magnifier registered under ``name`` with ``config`` (e.g. ``alpha=6.0``).

    Lookup order: names registered with ``register_magnifier`` (other than the "learned" placeholder), then the
    ``microexpr.magnifiers`` entry points of installed packages, then the placeholder, which raises
    ``MagnifierUnavailableError`` with instructions.
    """
    if name in _REGISTRY and name not in _BUILTIN_PLACEHOLDERS:
        return _REGISTRY[name](**config)
    factory = _entry_point_factory(name)
    if factory is not None:
        return factory(**config)
    if name in _REGISTRY:
        return _REGISTRY[name](**config)
    raise KeyError(f"no magnifier named {name!r}; available: {', '.join(available_magnifiers())}")
