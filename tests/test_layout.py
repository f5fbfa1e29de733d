"""The shape of the code base: services never import each other, common imports no service,
and every environment variable the code reads is documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
VIZ = ROOT / "viz"
SERVICES = {"config", "collect", "consumer", "cmp", "analytics", "recs"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_services_never_import_each_other_and_common_imports_none() -> None:
    offenders = []
    for package in [*SERVICES, "common", "_fast"]:
        for path in (VIZ / package).rglob("*.py") if (VIZ / package).exists() else []:
            for module in _imports(path):
                parts = module.split(".")
                if parts[0] == "viz" and len(parts) > 1 and parts[1] in SERVICES \
                        and parts[1] != package:
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_every_environment_variable_read_is_documented() -> None:
    documented = set(re.findall(r"`(VIZ_[A-Z0-9_]+)[`=]", (ROOT / "docs" / "configuration.md")
                                .read_text()))
    read: set[str] = set()
    for path in VIZ.rglob("*.py"):
        text = path.read_text()
        read.update(re.findall(r'"(VIZ_[A-Z0-9_]+)"', text))
        # HttpSettings.read(env, "name", port) builds VIZ_<NAME>_HOST / _PORT.
        for service in re.findall(r'HttpSettings\.read\(env, "([a-z]+)"', text):
            read.update({f"VIZ_{service.upper()}_HOST", f"VIZ_{service.upper()}_PORT"})
    assert sorted(read - documented) == []
