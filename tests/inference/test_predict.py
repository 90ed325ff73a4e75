"""Full-data model files and `microexpr predict` on synthetic clips (no Kedro run: an untrained seeded model with
the card the training DAG writes). tests/test_final_model_run.py covers the pipeline, the catalog and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from kedro.io.core import Version

from microexpr.datasets.final_model import FinalModelDataset, read_final_model, write_final_model
from microexpr.inference.card import CardMismatch, check_card, instantiate
from microexpr.inference.cli import predict_cli
from microexpr.inference.clip import ClipError, choose_key_frames, key_frame_motion, open_clip
from microexpr.inference.predict import predict_clip
from tests.inference.clips import PREPROCESS, untrained_final_model

PROJECT = Path(__file__).resolve().parents[2]
LABEL_MAPS = yaml.safe_load((PROJECT / "conf/base/labels.yml").read_text())


@pytest.fixture(scope="module")
def saved_mmnet(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "mmnet"
    write_final_model(folder, untrained_final_model("mmnet"))
    return folder


@pytest.mark.parametrize("model", ["mmnet", "seam_demo", "samer"])
def test_save_load_round_trip_gives_identical_predictions(model, clip_files, tmp_path) -> None:
    final = untrained_final_model(model)
    dataset = FinalModelDataset(filepath=str(tmp_path / "06_models" / model / "final_model"), version=Version(None, None))
    dataset.save(final)
    loaded = dataset.load()
    assert (tmp_path / "06_models" / model / "final_model").is_dir() and loaded.card["weights"]["bytes"] > 1000
    assert loaded.card["model"] == model and loaded.card["classes"] == final.card["classes"]
    assert set(loaded.state) == set(final.state)
    again = write_final_model(tmp_path / "again", final)  # what the tracking hook logs: byte for byte the same
    assert again["weights"]["sha256"] == loaded.card["weights"]["sha256"]
    clip = open_clip(clip_files["folder"], tmp_path / "scratch")
    before = predict_clip(final, clip, apex=clip_files["apex"], figures=False)
    after = predict_clip(loaded, clip, apex=clip_files["apex"], figures=False)
    np.testing.assert_array_equal(before.probabilities, after.probabilities)
    assert abs(float(before.probabilities.sum()) - 1.0) < 1e-5


def test_folder_and_mp4_of_the_same_clip_give_the_same_answer(clip_files, saved_mmnet, tmp_path) -> None:
    """Same key frames (the video numbers its frames from 1, the folder by file name): same class, probabilities
    within 0.03 (mp4v is lossy). Spotting on each is reported; benchmarks/apex_spotting.py measures how often the
    two spot the same frame."""
    final = read_final_model(saved_mmnet)
    numbers = clip_files["numbers"]
    keys = {"onset": numbers[0], "apex": clip_files["apex"], "offset": numbers[-1]}
    in_video = {name: numbers.index(value) + 1 for name, value in keys.items()}
    from_folder = predict_clip(final, open_clip(clip_files["folder"], tmp_path / "a"), label_maps=LABEL_MAPS, **keys)
    from_video = predict_clip(final, open_clip(clip_files["video"], tmp_path / "b"), label_maps=LABEL_MAPS,
                              **in_video)
    assert from_video.source == "video" and from_folder.source == "folder" and from_video.n_frames == len(numbers)
    assert from_folder.predicted == from_video.predicted
    assert np.abs(from_folder.probabilities - from_video.probabilities).max() < 0.03
    assert set(from_folder.figures) == {"prediction.png", "attention_overlay.png"}  # MMNet's own explanation too
    spotted = predict_clip(final, open_clip(clip_files["video"], tmp_path / "c"), figures=False)
    assert spotted.key_frames.spotted and spotted.key_frames.onset == 1 and spotted.key_frames.offset == len(numbers)


def test_predict_without_key_frames_reports_the_spotted_apex(clip_files, saved_mmnet, tmp_path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(predict_cli, [str(clip_files["folder"]), "--model", "mmnet", "--weights",
                                              str(saved_mmnet), "--out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "prediction.json").read_text())
    key = payload["key_frames"]
    motion = payload["motion"]
    assert key["chosen"]["apex"].startswith("spotted") and key["chosen"]["onset"] == "first frame"
    assert key["apex"] == motion["frames"][int(np.argmax(motion["score_px"]))]
    assert motion["onset_px"][0] == 0.0 and motion["offset_px"][-1] == 0.0
    assert f"apex: frame {key['apex']} (spotted" in result.output
    assert abs(sum(payload["probabilities"].values()) - 1.0) < 1e-5 and payload["predicted"] in result.output
    assert (out / "prediction.png").stat().st_size > 5000 and (out / "attention_overlay.png").is_file()
    given = CliRunner().invoke(predict_cli, [str(clip_files["folder"]), "--model", "mmnet", "--weights",
                                             str(saved_mmnet), "--out", str(out), "--apex", str(clip_files["apex"])])
    assert given.exit_code == 0 and f"apex: frame {clip_files['apex']} (given)" in given.output


def test_spotting_finds_the_frame_of_largest_local_motion() -> None:
    """A textured face whose centre patch moves away and back (peak at frame 5), on top of a rigid drift that
    grows to the last frame (the onset-relative curve alone would end higher there)."""
    rng = np.random.default_rng(0)
    base = (rng.random((128, 128)) * 255).astype(np.float32)
    import cv2

    base = cv2.GaussianBlur(base, (0, 0), 2.0)
    shifts = [0, 0.5, 1.0, 1.5, 2.0, 3.0, 2.0, 1.0, 0.5, 0.0]
    faces = []
    for t, shift in enumerate(shifts):
        frame = np.roll(base, t // 3, axis=1)  # rigid drift, growing to the end
        patch = cv2.warpAffine(base, np.float32([[1, 0, shift], [0, 1, 0]]), (128, 128), borderMode=cv2.BORDER_REFLECT)
        frame[40:88, 40:88] = np.roll(patch, t // 3, axis=1)[40:88, 40:88]
        faces.append(np.clip(frame, 0, 255).astype(np.uint8))
    motion = key_frame_motion(np.stack(faces))
    assert int(np.argmax(motion["score"])) == 5 and motion["onset"][0] == 0.0


def test_a_tampered_card_fails_clearly(saved_mmnet, clip_files, tmp_path) -> None:
    final = read_final_model(saved_mmnet)
    check_card(final.card, LABEL_MAPS)  # the untouched card passes

    recipes = read_final_model(saved_mmnet)
    recipes.card["versions"]["recipes"]["key_frames"] = 999
    with pytest.raises(CardMismatch, match="feature recipe versions"):
        check_card(recipes.card)

    classes = read_final_model(saved_mmnet)
    classes.card["classes"] = classes.card["classes"][:-1]
    with pytest.raises(CardMismatch, match="differ from label set 'emotion5'"):
        check_card(classes.card, LABEL_MAPS)
    with pytest.raises(CardMismatch, match="weights do not fit"):
        instantiate(classes)  # 4 outputs asked, 5 stored

    config = read_final_model(saved_mmnet)
    config.card["model_config"]["image_sise"] = 64
    with pytest.raises(CardMismatch, match="image_sise"):
        instantiate(config)

    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("card.json", "weights.safetensors"):
        (copy / name).write_bytes((saved_mmnet / name).read_bytes())
    card = json.loads((copy / "card.json").read_text())
    card["weights"]["sha256"] = "0" * 64
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(CardMismatch, match="not the ones this card describes"):
        read_final_model(copy)
    result = CliRunner().invoke(predict_cli, [str(clip_files["folder"]), "--model", "mmnet", "--weights", str(copy)])
    assert result.exit_code != 0 and "not the ones this card describes" in result.output


def test_a_card_without_weights_and_bad_key_frames_are_refused(saved_mmnet, clip_files, tmp_path) -> None:
    final = untrained_final_model("mmnet")
    skipped = type(final)({**final.card, "weights": None, "skipped": "mmnet.final_model was false in this run"})
    with pytest.raises(CardMismatch, match="final_model was false"):
        check_card(skipped.card)
    clip = open_clip(clip_files["folder"], tmp_path / "s")
    with pytest.raises(ClipError, match="not a frame"):
        choose_key_frames(clip, PREPROCESS, "synthetic", apex=10_000)
    with pytest.raises(ClipError, match="onset < offset"):
        choose_key_frames(clip, PREPROCESS, "synthetic", onset=clip.frame_numbers[5], offset=clip.frame_numbers[2])


def test_default_output_goes_to_the_envs_git_ignored_data_folder(monkeypatch, tmp_path) -> None:
    from microexpr.inference.cli import _default_out
    from microexpr.project import open_project

    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    assert _default_out(open_project("test")) == tmp_path / "08_reporting" / "predict"
    assert _default_out(open_project("quick")) == PROJECT / "data" / "quick" / "08_reporting" / "predict"
    assert _default_out(None) == Path("predictions")
