"""Shared helpers of the prediction tests: a synthetic clip on disk (folder of JPEGs, .mp4) and an untrained
full-data model with a card as the training DAG would write it (conf/test preprocessing, 64 px)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from microexpr.dag.final_model import preprocessing_of
from microexpr.data import synthetic as syn
from microexpr.datasets.face_photos import fallback_photos
from microexpr.inference.card import FinalModel, build_card, card_features, inference_state
from microexpr.models import build_model, build_task, task_class

PROJECT = Path(__file__).resolve().parents[2]

CLASSES = ["happiness", "disgust", "repression", "surprise", "others"]  # emotion5 (conf/base/labels.yml order)
PREPROCESS = {  # conf/base values at conf/test sizes
    "face_alignment": {"detect_max_side": 320, "upsample": 0, "workers": 1},
    "key_frames": {"alignment": "dlib", "size": 64, "box_enlarge": 2.5, "onset_after": 3, "apex_before": 3,
                   "apex_after": 3, "workers": 1},
    "flow_onset_apex": {"alignment": "dlib", "size": 64, "box_enlarge": 2.5, "method": "tvl1", "flow_params": {},
                        "workers": 1},
    "samer_inputs": {"alignment": "dlib", "size": 64, "box_enlarge": 2.5, "magnifier": "eulerian",
                     "magnifier_params": {"alpha": 6.0, "levels": 4}, "flow_params": {}, "jpeg_quality": None,
                     "flow_target": {"casme2": "apex", "samm": "magnified_apex", "default": "apex"}, "workers": 1},
}
MODEL_CONFIG = {"mmnet": {"image_size": 64}, "seam_demo": {"width": 8, "embed_dim": 16}, "samer": {}}


def synthetic_clip(size: int = 160, seed: int = 3) -> tuple[list[np.ndarray], list[int], int]:
    """RGB frames of one rendered synthetic clip (a strong expression), its frame numbers and its true apex."""
    params = syn.resolve_params({"n_subjects": 2, "clips_per_subject": [2, 2], "canvas_size": size, "seed": seed,
                                 "lead_in_frames": [3, 3], "tail_frames": [3, 3], "onset_to_apex_ms": [40, 50],
                                 "apex_to_offset_ms": [80, 90], "intensity": [1.0, 1.0]})
    photos = fallback_photos()
    plan = syn.plan_dataset(params, list(photos.images), fallback=True)
    clip = plan.clips[0]
    face = plan.subjects[0].face_id if plan.subjects[0].face_id in photos.images else next(iter(photos.images))
    canvas, landmarks = syn.build_identity_canvas(photos.images[face], size, face)
    basis = syn.build_face_basis(canvas, landmarks, np.random.default_rng(0), params)
    clip = replace(clip, nuisance=replace(clip.nuisance, noise_sigma=0.0))
    frames = syn.render_clip(basis, clip)
    return frames, list(clip.frame_numbers), clip.frame_numbers[clip.apex_index]


def write_folder(frames: list[np.ndarray], numbers: list[int], folder: Path) -> Path:
    """Frames as ``img<number>.jpg`` (CASME II's naming), quality 95."""
    folder.mkdir(parents=True, exist_ok=True)
    for frame, number in zip(frames, numbers, strict=True):
        cv2.imwrite(str(folder / f"img{number}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def write_video(frames: list[np.ndarray], path: Path, fps: float = 30.0) -> Path:
    """Frames as an MPEG-4 (mp4v) .mp4 with OpenCV."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4v video here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def env_config(key: str, data_root: Path, env: str = "test") -> dict:
    """The ``parameters`` or ``catalog`` of ``kedro run --env <env>`` as Kedro resolves them (data under
    ``data_root``: the test env reads MICROEXPR_DATA_ROOT)."""
    from kedro.config import OmegaConfigLoader

    from microexpr.settings import CONFIG_LOADER_ARGS

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MICROEXPR_DATA_ROOT", str(data_root))
        return dict(OmegaConfigLoader(conf_source=str(PROJECT / "conf"), env=env, **CONFIG_LOADER_ARGS)[key])


def env_settings(model: str, data_root: Path) -> dict:
    """``model``'s model options, task settings and feature preprocessing under ``--env test`` (tiny sizes)."""
    params = env_config("parameters", data_root)
    block = params.get(model) or {}
    features = card_features(task_class(model).features)
    return {"model_config": dict(block.get("model") or {}), "task_settings": dict(block.get("task") or {}),
            "preprocessing": {f: dict(params["preprocess"][f]) for f in features}}


def catalog_resources(model: str, data_root: Path) -> dict:
    """The catalog entries ``model``'s task reads in training (``catalog_inputs``: a text encoder, ...), loaded
    from the test env's catalog as a ``kedro run`` would load them."""
    from kedro.io import DataCatalog

    names = task_class(model).catalog_inputs
    if not names:
        return {}
    catalog = env_config("catalog", data_root)
    loaded = DataCatalog.from_config({name: catalog[name] for name in names})
    return {name: loaded.load(name) for name in names}


def untrained_final_model(model: str, seed: int = 0, settings: dict | None = None,
                          resources: dict | None = None) -> FinalModel:
    """A seeded, untrained model, built as training builds it (with the task's catalog ``resources``), with the
    card and the tensors the full-data node keeps (``inference_state``). ``settings`` (``env_settings``): the
    default is MODEL_CONFIG with conf/test preprocessing."""
    settings = settings or {"model_config": MODEL_CONFIG[model], "task_settings": {}, "preprocessing": PREPROCESS}
    torch.manual_seed(seed)
    task = build_task(model, settings["task_settings"], resources)
    net = build_model(model, num_classes=len(CLASSES), **settings["model_config"], **task.model_options())
    features = card_features(task_class(model).features)
    card = build_card(model=model, model_config=settings["model_config"], task_settings=settings["task_settings"],
                      training={"epochs": 1}, seed=seed, classes=CLASSES, label_set="emotion5", dataset="synthetic",
                      features=features, preprocessing=preprocessing_of(features, settings["preprocessing"]),
                      metrics={"selections": {"honest": {"uf1": 0.5, "uar": 0.5, "acc": 0.5}}},
                      trained_on={"n_samples": 0, "datasets": ["synthetic"]},
                      inference_modules=task_class(model).inference_modules)
    card["weights"] = {"file": "weights.safetensors"}  # filled for real when written
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return FinalModel(card, inference_state(state, task_class(model).inference_modules))
