"""SAMER's input recipe against the issue's spec: the flow target per dataset (apex on CASME II, magnified apex on
SAMM), the grey magnified apex in channel 0, lossless storage by default and the reference's JPEG round trip as an
option, and the learned-magnifier plug-in point."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from microexpr.features.recipes import jpeg_round_trip, samer_flow_target, samer_inputs
from microexpr.vision.face import to_grey
from microexpr.vision.flow import samer_composite, samer_on_off_apex
from microexpr.vision.magnify import get_magnifier, register_magnifier

SIZE = 48
PARAMS = {"size": SIZE, "magnifier": "eulerian", "magnifier_params": {"alpha": 6.0, "levels": 3},
          "flow_target": {"casme2": "apex", "samm": "magnified_apex", "default": "apex"}, "flow_params": {},
          "jpeg_quality": None}


def _faces(numbers, size, grey):
    """Onset: a smooth texture; apex: a blob in it shifted 1 px right; offset: the onset again."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.uniform(40, 200, (size, size)).astype(np.float32), (0, 0), 2.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shift = np.exp(-((xx - 16) ** 2 + (yy - 14) ** 2) / 40.0).astype(np.float32)
    apex = cv2.remap(base, xx - shift, yy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    frames = {1: base, 5: apex, 9: base}
    out = np.stack([np.clip(frames[n], 0, 255).astype(np.uint8) for n in numbers])
    return out if grey else np.repeat(out[..., None], 3, axis=-1)


def _sample(dataset: str) -> dict:
    return {"sample_id": f"{dataset}/s1/c1", "dataset": dataset, "onset": 1, "apex": 5, "offset": 9}


def test_flow_target_is_a_per_dataset_parameter_with_the_papers_defaults() -> None:
    assert samer_flow_target(PARAMS, "casme2") == "apex"
    assert samer_flow_target(PARAMS, "samm") == "magnified_apex"
    assert samer_flow_target(PARAMS, "synthetic") == "apex"
    assert samer_flow_target({"flow_target": "magnified_apex"}, "casme2") == "magnified_apex"
    with pytest.raises(ValueError, match="flow_target"):
        samer_flow_target({"flow_target": {"default": "onset"}}, "casme2")


def test_composite_is_grey_magnified_apex_and_the_flows_point_to_the_datasets_target() -> None:
    onset, apex, offset = _faces([1, 5, 9], SIZE, False)
    magnified = get_magnifier("eulerian", alpha=6.0, levels=3)(onset, apex)
    for dataset, target in (("casme2", apex), ("samm", magnified)):
        composite = samer_inputs(_sample(dataset), PARAMS, _faces)["composite"]
        expected = samer_composite(magnified, samer_on_off_apex(to_grey(onset), to_grey(target), to_grey(offset)))
        assert composite.dtype == np.uint8 and composite.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(composite, expected)  # lossless: exactly the computed composite
    casme, samm = (samer_inputs(_sample(d), PARAMS, _faces)["composite"] for d in ("casme2", "samm"))
    np.testing.assert_array_equal(casme[..., 0], samm[..., 0])  # channel 0: the magnified apex either way
    assert not np.array_equal(casme[..., 1:], samm[..., 1:])


def test_jpeg_round_trip_is_an_option_that_changes_the_stored_values() -> None:
    lossless = samer_inputs(_sample("casme2"), PARAMS, _faces)["composite"]
    jpeg = samer_inputs(_sample("casme2"), {**PARAMS, "jpeg_quality": 75}, _faces)["composite"]
    np.testing.assert_array_equal(jpeg, jpeg_round_trip(lossless, 75))
    assert jpeg.shape == lossless.shape and not np.array_equal(jpeg, lossless)
    assert np.abs(jpeg.astype(int) - lossless.astype(int)).mean() < 20
    with pytest.raises(ValueError, match="jpeg_quality"):
        jpeg_round_trip(lossless, 0)


def test_a_registered_learned_magnifier_is_used_for_the_composite(monkeypatch) -> None:
    from microexpr.vision import magnify

    monkeypatch.setattr(magnify, "_REGISTRY", dict(magnify._REGISTRY))  # restored after the test
    monkeypatch.setattr(magnify, "_BUILTIN_PLACEHOLDERS", set(magnify._BUILTIN_PLACEHOLDERS))
    calls = []

    def factory(checkpoint: str, alpha: float = 6.0):
        def magnify(onset, apex):
            calls.append((checkpoint, alpha))
            return np.full_like(apex, 77)
        return magnify

    register_magnifier("learned", factory, overwrite=True)
    params = {**PARAMS, "magnifier": "learned", "magnifier_params": {"checkpoint": "w.pt", "alpha": 6.0}}
    composite = samer_inputs(_sample("samm"), params, _faces)["composite"]
    assert calls == [("w.pt", 6.0)]
    assert (composite[..., 0] == 77).all()
