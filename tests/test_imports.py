"""Every module of the package imports on its own, first: an import cycle shows only in some import orders
(unpickling a fold result imports ``microexpr.training.results`` before anything else, for instance)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import microexpr

MODULES = sorted(m.name for m in pkgutil.walk_packages(microexpr.__path__, "microexpr."))

CHECK = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "microexpr" or m.startswith("microexpr.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failed.append(f"{name}: {type(error).__name__}: {error}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_the_package_has_modules_to_check() -> None:
    assert "microexpr.training.results" in MODULES and len(MODULES) > 40


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK, *MODULES], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"modules that fail when imported first:\n{proc.stdout}{proc.stderr[-2000:]}"
