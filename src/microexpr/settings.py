"""Kedro project settings: config loader (globals + ${oc.env:...} everywhere) and project hooks."""

from omegaconf.resolvers import oc

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # oc.env is otherwise allowed only in credentials; we use it for MLFLOW_TRACKING_URI and MICROEXPR_FACES.
    "custom_resolvers": {"oc.env": oc.env},
}
