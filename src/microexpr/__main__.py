"""microexpr file for ensuring the package is executable
as `microexpr` and `python -m microexpr`

``microexpr [kedro run options]`` runs the project (Kedro's ``run`` command, as before);
``microexpr faces download`` fetches the London face set for the synthetic dataset (microexpr.faces);
``microexpr predict <clip> --model <name>`` predicts a new clip with a saved full-data model (docs/predict.md);
``microexpr sweep <model> <param> <values>`` runs the model once per value of one parameter (microexpr.sweep).
The subcommand is dispatched on the first argument so every ``run`` option keeps working unchanged.
"""

import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from microexpr.faces import faces_cli

SUBCOMMANDS_EPILOG = (
    "Other commands: `microexpr faces download` fetches the Face Research Lab London Set (verified by sha256) "
    "into the cache folder the synthetic dataset reads; `microexpr faces download --help` for its options. "
    "`microexpr predict <clip> --model <name>` predicts a folder of frames or a video with a saved full-data model "
    "(`microexpr predict --help`). `microexpr sweep <model> <param> <v1,v2,...>` runs the model once per value of "
    "one parameter and plots the metrics against it (`microexpr sweep --help`)."
)


def command_line(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    """The arguments click would parse: ``args=``/first positional when given (as click's ``main``), else argv."""
    given = kwargs.get("args", args[0] if args else None)
    return list(sys.argv[1:] if given is None else given)


def main(*args, **kwargs) -> Any:
    """``microexpr faces …`` → the faces commands; ``microexpr predict …`` → prediction; anything else → Kedro's
    ``run`` for this project."""
    package_name = Path(__file__).parent.name
    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive

    argv: Sequence[str] = command_line(args, kwargs)
    if argv and argv[0] == faces_cli.name:
        return faces_cli.main(
            args=list(argv[1:]),
            prog_name=f"microexpr {faces_cli.name}",
            standalone_mode=kwargs["standalone_mode"],
        )
    if argv and argv[0] == "predict":
        from microexpr.inference.cli import predict_cli

        return predict_cli.main(args=list(argv[1:]), prog_name="microexpr predict",
                                standalone_mode=kwargs["standalone_mode"])

    if argv and argv[0] == "sweep":
        from microexpr.sweep import sweep_cli

        return sweep_cli.main(args=list(argv[1:]), prog_name="microexpr sweep",
                              standalone_mode=kwargs["standalone_mode"])

    # Imported here, not at the top: kedro logs on import, and `microexpr faces` needs none of it.
    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    configure_project(package_name)
    # A copy, so the epilog does not leak into `kedro run --help` in this process.
    run = copy.copy(find_run_command(package_name))
    run.epilog = SUBCOMMANDS_EPILOG
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
