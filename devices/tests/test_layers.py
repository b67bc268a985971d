"""devices sits below deployments, provisioning, telemetry and exports: it never imports them."""

import ast
from pathlib import Path

import devices

UPPER = {"deployments", "provisioning", "telemetry", "exports"}


def test_devices_imports_no_app_above_it():
    root = Path(devices.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(root)}: {name}" for name in names if name.split(".")[0] in UPPER]
    assert offenders == []
