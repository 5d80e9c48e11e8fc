"""The package import table of shared/design/ARCHITECTURE.md, enforced by walking imports."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vcoal"

# package -> vcoal packages it may import ("spec" is the shared scenario schema, see README)
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "spec": {"model"},
    "policies": {"model"},
    "sim": {"model", "policies", "spec"},
    "linux": {"model"},
    "results": {"model", "spec"},
    "testbed": {"model", "linux", "spec"},
    "agent": {"model", "policies", "linux"},
    "experiments": {"model", "spec", "policies", "sim", "linux", "testbed", "agent", "results"},
    "report": {"model", "results"},
    "cli": {"*"},
}


def _vcoal_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "vcoal" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_package_is_in_the_table():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED), f"packages missing from the import table: {packages - set(ALLOWED)}"


def test_imports_follow_the_table():
    violations = []
    for pkg, allowed in ALLOWED.items():
        if "*" in allowed:
            continue
        for path in (SRC / pkg).rglob("*.py"):
            for imported in _vcoal_imports(path) - allowed - {pkg}:
                violations.append(f"{path.relative_to(SRC)} imports vcoal.{imported}")
    assert not violations, "\n".join(violations)


def test_model_uses_only_the_standard_library():
    import sys

    stdlib = set(sys.stdlib_module_names) | {"vcoal", "__future__"}
    bad = []
    for path in (SRC / "model").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module.split(".")[0]]
            else:
                continue
            bad += [f"{path.name}: {m}" for m in mods if m not in stdlib]
    assert not bad, bad


def test_the_walker_sees_a_violation(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from vcoal.sim import engine\nimport vcoal.linux.knobs\n")
    assert _vcoal_imports(bad) == {"sim", "linux"}
