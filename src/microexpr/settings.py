"""Kedro project settings: config loader (globals + ${oc.env:...} everywhere) and project hooks."""

import warnings

from omegaconf.resolvers import oc

from microexpr.hooks import FoldTrackingHook

# Known, harmless deprecation noise from kedro's config loader on omegaconf 2.4 (printed on every CLI call).
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)

HOOKS = (FoldTrackingHook(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # oc.env is otherwise allowed only in credentials; we use it for MLFLOW_TRACKING_URI and MICROEXPR_FACES.
    "custom_resolvers": {"oc.env": oc.env},
    # An env (quick, test, local) overrides single nested keys instead of replacing whole top-level blocks.
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
}
