"""Project hooks (tracking only; nodes never call MLflow)."""

import logging

from kedro.framework.hooks import hook_impl

from microexpr.logging_filters import CollapseRepeats


class FoldTrackingHook:
    """Placeholder until the training stage lands."""

    @hook_impl
    def after_context_created(self, context) -> None:  # noqa: ARG002
        # Kedro's logging config forbids '()' factories, so the repeat filter is attached here.
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, CollapseRepeats) for f in handler.filters):
                handler.addFilter(CollapseRepeats())
