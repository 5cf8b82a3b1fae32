"""By construction: reporting sits below the pipeline and the Lightning callbacks (see DESIGN.md,
imports only point down), so no module under anomaly_kd/reporting imports either of them."""

import ast
import importlib
from pathlib import Path

import anomaly_kd.reporting

UPPER = ("anomaly_kd.callbacks", "anomaly_kd.pipeline", "anomaly_kd.run")
REPORTING = Path(anomaly_kd.reporting.__file__).parent


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` / ``from ... import`` names, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_import_finder_sees_nested_and_from_imports():
    source = "import os\ndef f():\n    from anomaly_kd.callbacks.overlays import overlay_panel\n"
    assert imported_modules(source) == {"os", "anomaly_kd.callbacks.overlays",
                                        "anomaly_kd.callbacks.overlays.overlay_panel"}


def test_no_reporting_module_imports_the_layers_above_it():
    files = sorted(REPORTING.glob("*.py"))
    assert {f.stem for f in files} >= {"sweep_jobs", "sweep_rows", "sweep_tables", "sweep_report", "wandb_sweep"}
    for file in files:
        importlib.import_module(f"anomaly_kd.reporting.{file.stem}" if file.stem != "__init__" else "anomaly_kd.reporting")
        upward = sorted(name for name in imported_modules(file.read_text())
                        if any(name == up or name.startswith(up + ".") for up in UPPER))
        assert upward == [], f"{file.name} imports {upward}"
