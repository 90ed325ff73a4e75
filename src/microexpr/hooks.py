"""Project hooks: MLflow tracking of folds, metrics and report artifacts (nodes never call MLflow).

kedro-mlflow opens one parent run per ``kedro run`` and logs the flattened parameters. This hook adds what is
specific to our training stage, reacting to what the nodes save:

* the run is renamed ``<model> · <dataset> · <label set> · <primary selection>`` and tagged, so an
  ``oracle_epoch`` run can never pass for an honest one in the MLflow UI (a label set resolved by ingest
  renames the run again once the metrics know it); demonstration settings (a warm-up) add `` · demo``; a task's
  leak label (``Task.leak``, e.g. `` · au_leak``) joins the name and its run tags (``Task.run_tags``) become
  ``microexpr.<model>.<tag>`` tags;
* every fold result a training shard streams becomes a nested run ``<model>.<fold>`` with every per-epoch column
  of its history (each named loss term, accuracy, learning rates, throughput, the test-subject accuracy that the
  ``oracle_epoch`` selection reads; step = epoch) and the fold's accuracy and UF1 under each selection;
* the metrics of every selection are logged on the parent, prefixed by the selection (``honest.uf1``,
  ``oracle_epoch.uf1``: never mixed under one name);
* the prediction table, per-class reports, figures (the generic ones and the model's own), scorecard and report
  are logged as artifacts under ``<model>/``;
* every run (parent and fold runs) carries the plain tags ``paper, model, dataset, label_set, protocol, selection,
  au_source`` (``plain_tags``; comma-joined when a run holds several models; ``au_source`` from the task's
  ``run_tags()`` or the metrics' ``tags``, ``n/a`` when the model has none), so runs filter alike in the MLflow UI;
* the comparison (``compare.*`` datasets of ``kedro run --pipelines=all | compare``) is a nested run of its own,
  ``compare · <dataset> · <label set>``, with the leaderboard, paired tests, gap, report (markdown and HTML), forest
  plot and MEGC2019 exports as artifacts under ``compare/`` and each pooled leaderboard value as a metric
  ``<model>.<selection>.<metric>`` (with ``_low`` / ``_high``);
* a full-data model (``<model>.final_model``) gets the run id written into its card before the catalog saves it,
  and is logged as the run's model: its folder (card + safetensors) as artifacts under ``<model>/final_model/``
  and as an MLflow logged model named ``<model>`` (tag ``microexpr.<model>.final_model_id``).

Which dataset names belong to a model comes from the model registry (microexpr.models), the one model list.

Faults (docs/reliability.md): before kedro-mlflow opens the tracking store, an embedded sqlite store is created
or upgraded under a file lock (``<db>.lock``), so two first runs at once cannot both migrate it; each parent run
is tagged with its host and process id, and a later run on the same host marks RUNNING runs of the experiment
whose process is gone (a SIGKILLed run) KILLED, with a note.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.framework.hooks import hook_impl

from microexpr.logging_filters import CollapseRepeats

logger = logging.getLogger(__name__)

HISTORY_RENAMES = {"seconds": "epoch_seconds"}


def _active_run():
    import mlflow

    return mlflow.active_run()


def _model_of(dataset_name: str) -> str | None:
    """The registered model a namespaced dataset (``<model>.…``) belongs to, else None (registry imported lazily)."""
    if "." not in dataset_name:
        return None
    from microexpr.models import available_models

    head = dataset_name.split(".", 1)[0]
    return head if head in available_models() else None


def history_metrics(history: pd.DataFrame) -> list[tuple[int, dict[str, float]]]:
    """Per epoch: every numeric history column except ``epoch`` (NaN left out), as MLflow metric names."""
    steps = []
    columns = [c for c in history.columns if c != "epoch" and pd.api.types.is_numeric_dtype(history[c])]
    for _, row in history.iterrows():
        values = {HISTORY_RENAMES.get(c, c): float(row[c]) for c in columns if not math.isnan(float(row[c]))}
        steps.append((int(row["epoch"]), values))
    return steps


def _expected_label_set(catalog: Any, params: dict[str, Any]) -> str:
    """The label set ingest will use: the requested one, or the dataset's default when none is requested."""
    from microexpr.data.labels import resolve_label_set

    requested = params.get("label_set")
    try:
        return resolve_label_set(catalog.load("label_maps"), str(params.get("dataset")), requested)
    except Exception:  # noqa: BLE001 - naming only; ingest reports a bad label set with its own message
        return str(requested or "default")


def task_labels(model: str, params: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """The run tags and leak label of ``model``'s task under the run's ``<model>.task`` parameters."""
    from microexpr.models import available_models, build_task

    if model not in available_models():
        return {}, None
    try:
        task = build_task(model, (params.get(model) or {}).get("task"))
    except Exception:  # noqa: BLE001 - naming only; a bad task block fails with its own message in the nodes
        return {}, None
    return {str(k): str(v) for k, v in task.run_tags().items()}, task.leak()


def _run_name(models: list[str], params: dict[str, Any], label_sets: dict[str, str]) -> str:
    dataset = str(params.get("dataset", "?"))
    parts = []
    for model in models:
        block = params.get(model) or {}
        selection = str(block.get("selection", "honest"))
        label_set = label_sets.get(model) or str(params.get("label_set") or "auto")
        warmup = ((block.get("training") or {}).get("scheduler") or {}).get("warmup_epochs") or 0
        leak = task_labels(model, params)[1]
        parts.append(f"{model} · {dataset} · {label_set} · {selection}" + (f" · {leak}" if leak else "")
                     + (" · demo" if warmup else ""))
    return " + ".join(parts)


def _paper_titles() -> dict[str, str]:
    from microexpr.evaluation.scorecard import load_paper_claims

    try:
        return {c["model"]: str(c["title"] or c["model"]) for c in load_paper_claims()}
    except Exception:  # noqa: BLE001 - naming only
        return {}


def plain_tags(models: list[str], params: dict[str, Any], label_sets: dict[str, str],
             task_tags: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """The plain tags every run carries: paper, model, dataset, label_set, protocol, selection, au_source."""
    titles = _paper_titles()
    task_tags = task_tags if task_tags is not None else {m: task_labels(m, params)[0] for m in models}

    def joined(values: list[str]) -> str:
        return ",".join(dict.fromkeys(values)) or "n/a"

    return {
        "paper": joined([titles.get(m, m) for m in models])[:5000],
        "model": joined(models),
        "dataset": str(params.get("dataset", "?")),
        "label_set": joined([label_sets.get(m) or str(params.get("label_set") or "auto") for m in models]),
        "protocol": str((params.get("split") or {}).get("protocol", "?")),
        "selection": joined([str((params.get(m) or {}).get("selection", "honest")) for m in models]),
        "au_source": joined([task_tags.get(m, {}).get("au_source", "n/a") for m in models]),
    }


def fold_metrics(predictions: pd.DataFrame) -> dict[str, float]:
    """Accuracy and UF1 of one fold under each selection (scikit-learn; classes absent from the fold ignored), the
    mean of each auxiliary score (``aux.<name>``, e.g. flow EPE) and the accuracy and F1 (when defined) of each
    auxiliary detector (``aux.<name>.acc`` / ``.f1``, e.g. one per AU), measured after the last epoch."""
    from sklearn.metrics import accuracy_score, f1_score

    from microexpr.evaluation.metrics import AUX_PREFIX, DETECTION_KEYS, auxiliary_detections

    out: dict[str, float] = {}
    for selection, table in predictions.groupby("selection"):
        if table.empty:
            continue
        out[f"{selection}.acc"] = float(accuracy_score(table["y_true"], table["y_pred"]))
        out[f"{selection}.uf1"] = float(f1_score(table["y_true"], table["y_pred"], average="macro", zero_division=0))
    for column in (c for c in predictions.columns if str(c).startswith(AUX_PREFIX)):
        out[f"aux.{str(column)[len(AUX_PREFIX):]}"] = float(predictions[column].astype(float).mean())
    if len(predictions):  # detections repeat under every selection: score one selection's rows
        one = predictions[predictions["selection"] == predictions["selection"].iloc[0]]
        for name, scores in auxiliary_detections(one).items():
            for key in ("accuracy", "f1"):
                short = DETECTION_KEYS[key]
                if scores[key] is not None:
                    out[f"aux.{name}.{short}"] = float(scores[key])
    return out


def per_class_report(metrics: dict[str, Any]) -> pd.DataFrame:
    """Per-class precision/recall/F1/support of every selection, one row per (selection, class)."""
    rows = []
    for selection, m in metrics.get("selections", {}).items():
        for cls, values in m.get("per_class", {}).items():
            rows.append({"selection": selection, "class": cls, **values})
    return pd.DataFrame(rows)


def sqlite_path(uri: str, project_path: Path) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (relative paths from the project root), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///"):])
    return path if path.is_absolute() else project_path / path


def prepare_tracking_store(uri: str, project_path: Path, timeout_s: float = 600.0) -> None:
    """Create or upgrade an embedded sqlite tracking store once, under a file lock beside it (no-op for a server).

    MLflow migrates a fresh database when a store first opens it; two processes doing that at once collide
    (``duplicate column name``). The first to take the lock migrates; the others wait, then find it current.
    """
    path = sqlite_path(uri, project_path)
    if path is None:
        return
    import mlflow
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock", timeout=timeout_s):
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)


def _tracking_uri(context: Any) -> str:
    """The tracking URI kedro-mlflow will use: mlflow.yml's ``server.mlflow_tracking_uri``, else the env var."""
    uri = None
    try:
        patterns = context.config_loader.config_patterns
        if "mlflow" not in patterns:
            patterns.update({"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]})
        uri = ((context.config_loader["mlflow"] or {}).get("server") or {}).get("mlflow_tracking_uri")
    except Exception:  # noqa: BLE001 - no mlflow.yml: kedro-mlflow falls back the same way
        uri = None
    return str(uri or os.environ.get("MLFLOW_TRACKING_URI", "mlruns"))


def _process_gone(pid: int, started_ms: int) -> bool:
    """True when no process ``pid`` runs, or the one that does started after the run (the pid was reused)."""
    import psutil

    try:
        return psutil.Process(pid).create_time() * 1000 > started_ms + 1000
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def close_stale_runs(client: Any, experiment_id: str, current_run_id: str, host: str) -> list[str]:
    """Mark KILLED (with a note) every RUNNING parent run of the experiment started by a process on ``host`` that
    is gone, and its RUNNING nested runs; returns their ids. Runs of other hosts are left alone (their process
    cannot be checked from here: a cluster's shards run at the same time)."""
    closed = []
    stale = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`microexpr.host` = '{host}'",
    )
    for run in stale:
        pid = run.data.tags.get("microexpr.pid", "")
        if run.info.run_id == current_run_id or not pid.isdigit() or not _process_gone(int(pid), run.info.start_time):
            continue
        children = client.search_runs(
            [experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`mlflow.parentRunId` = '{run.info.run_id}'",
        )
        for item in [run, *children]:
            note = (f"Marked KILLED by run {current_run_id}: its process (pid {pid} on {host}) ended without "
                    "closing it (killed or crashed). Fold results it finished are reused by later runs.")
            client.set_tag(item.info.run_id, "mlflow.note.content", note)
            client.set_tag(item.info.run_id, "microexpr.stale", "killed")
            client.set_terminated(item.info.run_id, status="KILLED")
            closed.append(item.info.run_id)
    if closed:
        logger.warning("Marked %d stale RUNNING MLflow run(s) KILLED (their process is gone): %s", len(closed),
                       ", ".join(closed))
    return closed


class FoldTrackingHook:
    """See the module docstring."""

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._models: list[str] = []
        self._label_sets: dict[str, str] = {}
        self._suffix = ""
        self._compare_run: str | None = None
        self._task_tags: dict[str, dict[str, str]] = {}

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        # Kedro's logging config forbids '()' factories, so the repeat filter is attached here.
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, CollapseRepeats) for f in handler.filters):
                handler.addFilter(CollapseRepeats())
        try:
            self._params = dict(context.params)
        except Exception:  # noqa: BLE001 - params are only used for naming; a broken config fails elsewhere
            self._params = {}
        # tryfirst: runs before kedro-mlflow's own after_context_created opens the store
        prepare_tracking_store(_tracking_uri(context), Path(context.project_path))

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:  # noqa: ARG002
        run = _active_run()
        if run is None:
            return
        import mlflow

        self._compare_run = None
        run_id, host = run.info.run_id, socket.gethostname()
        mlflow.set_tags({"microexpr.host": host, "microexpr.pid": str(os.getpid())})
        try:
            close_stale_runs(mlflow.MlflowClient(), run.info.experiment_id, run_id, host)
        except Exception as exc:  # noqa: BLE001 - housekeeping must never stop a run
            logger.warning("Could not check for stale RUNNING MLflow runs: %s", exc)
        models = sorted({_model_of(n) for n in pipeline.all_outputs() if _model_of(n)})
        if not models:
            if "compare.leaderboard" in pipeline.all_outputs():
                mlflow.set_tag("mlflow.runName", f"compare · {self._params.get('dataset', '?')}")
            return
        from microexpr.dag.shards import n_shards

        namespaces = run_params.get("namespaces") or run_params.get("namespace")
        self._models, self._label_sets = models, {}
        self._suffix = ""
        if namespaces:
            self._suffix = f" · {','.join(namespaces) if isinstance(namespaces, list | tuple) else namespaces}"
        self._label_sets = dict.fromkeys(models, _expected_label_set(catalog, self._params))
        mlflow.set_tag("mlflow.runName", _run_name(models, self._params, self._label_sets) + self._suffix)
        tags = {"microexpr.models": ",".join(models), "microexpr.dataset": str(self._params.get("dataset", "?")),
                "microexpr.label_set": self._label_sets[models[0]],
                "microexpr.n_shards": str(n_shards())}
        for model in models:
            block = self._params.get(model) or {}
            tags[f"microexpr.{model}.selection"] = str(block.get("selection", "honest"))
            warmup = ((block.get("training") or {}).get("scheduler") or {}).get("warmup_epochs") or 0
            if warmup:
                tags[f"microexpr.{model}.demo_settings"] = f"learning-rate warm-up over {warmup} epochs"
            model_tags, leak = task_labels(model, self._params)
            tags.update({f"microexpr.{model}.{key}": value for key, value in model_tags.items()})
            tags[f"microexpr.{model}.leak"] = leak or "none"
        self._task_tags = {m: task_labels(m, self._params)[0] for m in models}
        tags.update(plain_tags(models, self._params, self._label_sets, self._task_tags))
        mlflow.set_tags(tags)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data: Any, node) -> None:  # noqa: ARG002
        """The MLflow run id goes into a full-data model's card before the catalog writes it."""
        run = _active_run()
        if run is None or _model_of(dataset_name) is None:
            return
        from microexpr.inference.card import FinalModel

        if isinstance(data, FinalModel):
            data.card["mlflow_run_id"] = run.info.run_id

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:  # noqa: ARG002
        if _active_run() is not None and dataset_name.startswith("compare."):
            self._log_comparison(dataset_name, data)
            return
        if _active_run() is None or _model_of(dataset_name) is None:
            return
        from microexpr.inference.card import FinalModel
        from microexpr.training.results import FoldResult

        model = _model_of(dataset_name)
        if isinstance(data, FoldResult):
            self._log_fold(data)
        elif isinstance(data, FinalModel):
            self._log_final_model(model, data)
        elif dataset_name.endswith(".metrics") and isinstance(data, dict) and "selections" in data:
            self._log_metrics(model, data)
            self._rename_with_label_set(model, str(data.get("label_set", "")))
        elif dataset_name.endswith(".predictions") and isinstance(data, pd.DataFrame):
            self._log_frame(model, data, "predictions.csv")
        elif dataset_name.endswith(".scorecard") and isinstance(data, pd.DataFrame):
            self._log_frame(model, data, "scorecard.csv")
        elif dataset_name.endswith(".report") and isinstance(data, str):
            self._log_text(model, data, "report.md")
        elif dataset_name.endswith(".task_figures") and isinstance(data, dict):
            for name, figure in data.items():
                self._log_figure(model, figure, name)
        elif dataset_name.endswith("_figure") and hasattr(data, "savefig"):
            figure = dataset_name.split(".", 1)[1][: -len("_figure")]
            self._log_figure(model, data, f"{figure}.png")

    def _rename_with_label_set(self, model: str, label_set: str) -> None:
        """Once the metrics say which label set ingest resolved, name the run with it (and tag it)."""
        import mlflow

        if not label_set or model not in self._models:
            return
        self._label_sets[model] = label_set
        mlflow.set_tag("mlflow.runName", _run_name(self._models, self._params, self._label_sets) + self._suffix)
        mlflow.set_tag("microexpr.label_set", label_set)
        mlflow.set_tags(plain_tags(self._models, self._params, self._label_sets, self._task_tags))

    # ------------------------------------------------------------------------------------------------ logging
    def _log_fold(self, result) -> None:
        import mlflow

        suffix = " [reused]" if result.reused else ""
        with mlflow.start_run(run_name=f"{result.model}.{result.fold}{suffix}", nested=True):
            mlflow.set_tags({"microexpr.model": result.model, "microexpr.fold": result.fold,
                             "microexpr.reused": str(bool(result.reused)),
                             **plain_tags([result.model], self._params, self._label_sets,
                                        {result.model: self._task_tags.get(result.model, {})})})
            mlflow.log_params({
                "fold": result.fold, "shard": result.shard, "test_subjects": ",".join(result.test_subjects),
                "n_train": result.n_train, "n_test": result.n_test, "seed": result.seed, "key": result.key,
                "device": result.device, "precision": result.precision,
            })
            for step, values in history_metrics(result.history):
                mlflow.log_metrics(values, step=step)
            mlflow.log_metrics({**fold_metrics(result.predictions), "wall_seconds": float(result.wall_seconds)})

    def _log_comparison(self, dataset_name: str, data: Any) -> None:
        """Everything the comparison saves goes into its own nested run (opened on the first save)."""
        import mlflow

        name = dataset_name.removeprefix("compare.")
        if self._compare_run is None:
            with mlflow.start_run(run_name=f"compare · {self._params.get('dataset', '?')}", nested=True) as run:
                self._compare_run = run.info.run_id
                mlflow.set_tag("microexpr.kind", "compare")
        with mlflow.start_run(run_id=self._compare_run, nested=True):
            if name == "summary" and isinstance(data, dict):
                models = list(data.get("models", []))
                tags = plain_tags(models, self._params, dict.fromkeys(models, str(data.get("label_set", ""))),
                                {m: t for m, t in (data.get("tags") or {}).items()})
                tags.update({"dataset": str(data.get("dataset")), "protocol": str(data.get("protocol")),
                             "selection": ",".join(data.get("selections", [])) or "n/a",
                             "microexpr.missing_models": ",".join(data.get("missing", [])) or "none"})
                mlflow.set_tags(tags)
                mlflow.set_tag("mlflow.runName", f"compare · {data.get('dataset')} · {data.get('label_set')}")
                mlflow.log_text(json.dumps(data, indent=2, default=str), "compare/summary.json")
            elif name == "leaderboard" and isinstance(data, pd.DataFrame):
                self._log_frame("compare", data, "leaderboard.csv")
                from microexpr.evaluation.metrics import _mlflow_key

                pooled = data[data["scope"] == "pooled"]
                values = {}
                for row in pooled.itertuples():
                    for metric in ("acc", "uf1", "uar", "wf1"):
                        for suffix in ("", "_low", "_high"):
                            value = getattr(row, f"{metric}{suffix}")
                            if value is not None and not math.isnan(float(value)):
                                values[_mlflow_key(row.model, row.selection, metric + suffix)] = float(value)
                mlflow.log_metrics(values)
            elif isinstance(data, pd.DataFrame):
                self._log_frame("compare", data, f"{name}.csv")
            elif name in ("report", "report_html") and isinstance(data, str):
                self._log_text("compare", data, "report.md" if name == "report" else "report.html")
            elif name == "forest_figure" and hasattr(data, "savefig"):
                self._log_figure("compare", data, "forest.png")
            elif name == "megc2019_logs" and isinstance(data, dict):
                for key, text in data.items():
                    mlflow.log_text(str(text), f"compare/megc2019_logs/{key}.txt")
            elif name == "megc2019_scores" and isinstance(data, dict) and data:
                mlflow.log_text(json.dumps(data, indent=2), "compare/megc2019_scores.json")
    def _log_final_model(self, model: str, final) -> None:
        """The saved folder as run artifacts and as an MLflow logged model (a failure of the latter warns)."""
        import mlflow

        from microexpr.datasets.final_model import write_final_model

        if not final.trained:
            mlflow.set_tag(f"microexpr.{model}.final_model", f"not trained: {final.card.get('skipped')}")
            return
        with tempfile.TemporaryDirectory() as tmp:
            card = write_final_model(Path(tmp), final)
            mlflow.log_artifacts(tmp, artifact_path=f"{model}/final_model")
            mlflow.set_tag(f"microexpr.{model}.final_model", f"sha256 {card['weights']['sha256']}")
            try:
                logged = mlflow.initialize_logged_model(
                    name=model, source_run_id=_active_run().info.run_id, model_type="microexpr.final_model",
                    tags={"microexpr.model": model, "microexpr.label_set": str(card.get("label_set")),
                          "microexpr.dataset": str(card.get("dataset"))},
                )
                mlflow.MlflowClient().log_model_artifacts(logged.model_id, tmp)
                mlflow.finalize_logged_model(logged.model_id, "READY")
                mlflow.set_tag(f"microexpr.{model}.final_model_id", logged.model_id)
            except Exception as error:  # noqa: BLE001 - the artifacts above already hold the model
                logger.warning("%s: logging the full-data model as an MLflow logged model failed (%s); it is in the "
                               "run's artifacts under %s/final_model", model, error, model)

    def _log_metrics(self, model: str, metrics: dict[str, Any]) -> None:
        import mlflow

        from microexpr.evaluation.metrics import flat_metrics

        flat: dict[str, float] = {}
        for selection, m in metrics["selections"].items():
            flat.update(flat_metrics(m, prefix=f"{model}.{selection}"))
        mlflow.log_metrics({k: v for k, v in flat.items() if v is not None and not math.isnan(v)})
        mlflow.log_metric(f"{model}.n_samples_excluded", len(metrics.get("excluded_samples", [])))
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
            per_class_report(metrics).to_csv(Path(tmp) / "per_class_report.csv", index=False)
            mlflow.log_artifacts(tmp, artifact_path=model)

    def _log_frame(self, model: str, frame: pd.DataFrame, name: str) -> None:
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            frame.to_csv(Path(tmp) / name, index=False)
            mlflow.log_artifact(str(Path(tmp) / name), artifact_path=model)

    def _log_text(self, model: str, text: str, name: str) -> None:
        import mlflow

        mlflow.log_text(text, f"{model}/{name}")

    def _log_figure(self, model: str, figure, name: str) -> None:
        import mlflow

        mlflow.log_figure(figure, f"{model}/{name}")
