"""``microexpr predict <clip> --model <name> [--weights …] [--onset N --apex M --offset K]`` (docs/predict.md).

Weights: by default the newest saved version of the catalog entry ``<model>.final_model`` in this project (``--env``
picks the configuration environment, hence the data folder); ``--weights`` takes a model folder (or its card.json),
an MLflow run (``runs:/<run id>`` or the bare run id: its ``<model>/final_model`` artifacts) or an MLflow logged
model (``models:/<model id>``). The card is checked against this code before anything runs.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from microexpr.project import Project, open_project

RUN_ID = re.compile(r"^[0-9a-f]{32}$")

__all__ = ["predict_cli", "resolve_weights"]


def _from_mlflow(uri: str, model: str, project: Project | None) -> Path:
    """Download a run's ``<model>/final_model`` artifacts or a logged model's artifacts; the local folder. The
    tracking store is MLFLOW_TRACKING_URI, else the project's conf mlflow.yml."""
    import os

    import mlflow

    if not os.environ.get("MLFLOW_TRACKING_URI") and project is not None and project.tracking_uri():
        mlflow.set_tracking_uri(project.tracking_uri())

    if RUN_ID.match(uri):
        uri = f"runs:/{uri}"
    if uri.startswith("runs:/") and uri.rstrip("/").count("/") == 1:
        uri = f"{uri.rstrip('/')}/{model}/final_model"
    if uri.startswith("models:/"):
        model_id = uri.removeprefix("models:/").strip("/")
        uri = mlflow.MlflowClient().get_logged_model(model_id).artifact_location
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="microexpr-")))


def resolve_weights(model: str, weights: str | None, project: Project | None):
    """(FinalModel, where it came from) for ``--weights`` (module docstring)."""
    from microexpr.datasets.final_model import read_final_model

    if weights is None:
        if project is None:
            raise click.ClickException("not inside the microexpr project: pass --weights <folder or MLflow run>")
        dataset = f"{model}.final_model"
        try:
            final = project.catalog().load(dataset)
        except Exception as error:  # noqa: BLE001 - no saved version yet: say how to make one
            raise click.ClickException(
                f"no saved full-data model in the catalog entry {dataset} ({error}); run `kedro run "
                f"--pipelines={model}` with {model}.final_model: true, or pass --weights") from None
        return final, f"catalog {dataset} (newest version)"
    path = Path(weights)
    if path.exists():
        return read_final_model(path), str(path)
    if RUN_ID.match(weights) or weights.startswith(("runs:/", "models:/")):
        return read_final_model(_from_mlflow(weights, model, project)), f"MLflow {weights}"
    raise click.ClickException(f"--weights {weights!r} is neither a folder nor an MLflow run (runs:/<id>, models:/<id>)")


def _default_out(project: Project | None) -> Path:
    """``<data_root>/08_reporting/predict`` of the project's env (git-ignored), else ``./predictions``."""
    if project is None:
        return Path("predictions")
    try:
        root = Path(str(project.config["globals"]["data_root"]))
    except (KeyError, TypeError, ValueError):
        root = Path("data")
    return (root if root.is_absolute() else project.root / root) / "08_reporting" / "predict"


def _label_maps(project: Project | None) -> dict | None:
    if project is None:
        return None
    try:
        return project.catalog().load("label_maps")
    except Exception:  # noqa: BLE001 - the class check is then skipped, and said so
        return None


def _report(result, card: dict[str, Any], source: str, out: Path, seconds: float, label_checked: bool) -> None:
    key = result.key_frames
    loso = card.get("loso_metrics") or {}
    click.echo(f"clip: {result.clip} ({result.n_frames} frames, {result.source})")
    n_samples = (card.get("trained_on") or {}).get("n_samples")
    click.echo(f"model: {result.model} trained on {card.get('dataset')} · {card.get('label_set')}"
               f"{f' ({n_samples} clips)' if n_samples else ''}; weights: {source}")
    if loso.get("uf1") is None:
        click.echo("honest LOSO metrics: not recorded in this card")
    else:
        click.echo(f"{loso.get('selection')} LOSO of that run (the number to quote): UF1 {loso['uf1']:.3f}, UAR "
                   f"{loso.get('uar') or float('nan'):.3f}, accuracy {loso.get('accuracy') or float('nan'):.3f} over "
                   f"{loso.get('n_folds')} folds")
    if card.get("leak"):
        click.echo(f"WARNING: this model was trained with a leaky setting ({card['leak']}): it read test-sample "
                   "annotations as inputs, which a new clip does not have; its LOSO number is not honest")
    if not label_checked:
        click.echo("note: classes not checked against labels.yml (not inside the project)")
    for name in ("onset", "apex", "offset"):
        click.echo(f"{name}: frame {getattr(key, name)} ({key.chosen[name]})")
    click.echo("probabilities:")
    for cls, p in sorted(zip(result.classes, result.probabilities, strict=True), key=lambda t: -t[1]):
        click.echo(f"  {cls:<14} {p:6.3f}  {'#' * int(round(p * 40))}")
    click.echo(f"predicted: {result.predicted}")
    click.echo(f"written: {out} ({', '.join(['prediction.json', *result.figures])}); {seconds:.1f} s")


@click.command(name="predict")
@click.argument("clip", type=click.Path(exists=True, path_type=Path))
@click.option("--model", "model", required=True, help="Registered model name (mmnet, ...).")
@click.option("--weights", default=None,
              help="Model folder, runs:/<run id> (or the bare id), models:/<model id>; default: the catalog's newest.")
@click.option("--onset", type=int, default=None, help="Onset frame number (default: the first frame).")
@click.option("--apex", type=int, default=None, help="Apex frame number (default: spotted, and reported).")
@click.option("--offset", type=int, default=None, help="Offset frame number (default: the last frame).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for prediction.json and the figures (default: <data_root>/08_reporting/predict/<clip>_<model>).")
@click.option("--env", default=None, help="Kedro configuration environment whose catalog holds the model.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 or auto.")
def predict_cli(clip: Path, model: str, weights: str | None, onset: int | None, apex: int | None,
                offset: int | None, out: Path | None, env: str | None, device: str) -> None:
    """Class probabilities of one clip (a folder of frames or a video file) and a figure."""
    from microexpr.inference.card import CardMismatch
    from microexpr.inference.clip import ClipError, open_clip
    from microexpr.inference.predict import predict_clip

    started = time.perf_counter()
    project = open_project(env)
    try:
        final, source = resolve_weights(model, weights, project)
    except (CardMismatch, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    if final.card.get("model") != model:
        raise click.ClickException(f"--model {model} but the weights' card is of model {final.card.get('model')!r}")
    label_maps = _label_maps(project)
    with tempfile.TemporaryDirectory(prefix="microexpr-clip-") as scratch:
        try:
            result = predict_clip(final, open_clip(clip, Path(scratch)), onset=onset, apex=apex, offset=offset,
                                  device=device, label_maps=label_maps)
        except (CardMismatch, ClipError) as error:
            raise click.ClickException(str(error)) from None
    out = out or _default_out(project) / f"{result.clip}_{model}"
    out.mkdir(parents=True, exist_ok=True)
    payload = {**result.to_json(final.card), "weights": source}
    (out / "prediction.json").write_text(json.dumps(payload, indent=2))
    for name, figure in result.figures.items():
        figure.savefig(out / name, dpi=110, bbox_inches="tight")
    _report(result, final.card, source, out, time.perf_counter() - started, label_maps is not None)
