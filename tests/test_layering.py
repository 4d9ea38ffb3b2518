"""The import rules of ARCHITECTURE.md and STYLE.md section 2, checked by parsing imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_PACKAGES = ("gossip", "raftlite", "scheduler")
FORBIDDEN_IN_CORES = {"trio", "asyncio", "socket", "threading", "subprocess", "psutil",
                      "time", "secrets", "uuid", "quart", "quart_trio", "hypercorn"}
DRIVER_FILES = {"driver.py"}
PURE_AGENT_MODULES = ("agent/node.py", "agent/faults.py", "agent/state.py", "agent/servers.py",
                      "agent/state_sched.py", "agent/jobspec.py", "agent/metrics.py", "agent/acl.py",
                      "agent/state_acl.py", "agent/chaos/plan.py", "agent/chaos/record.py",
                      "agent/chaos/invariants.py", "agent/chaos/report.py")


def python_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def core_violations(path: Path) -> list[str]:
    """What a pure core module does that STYLE.md section 2 forbids."""
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = [f"imports {m}" for m in sorted(imported_modules(tree)) if top(m) in FORBIDDEN_IN_CORES]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            bad = [a.name for a in node.names if a.name != "Random"]
            problems += [f"imports random.{name}" for name in bad]
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            problems += [f"imports os.{a.name}" for a in node.names if a.name == "urandom"]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "random" and node.attr != "Random":
                problems.append(f"calls random.{node.attr} (pass an rng instead)")
            if node.value.id == "os" and node.attr == "urandom":
                problems.append("calls os.urandom (pass entropy instead)")
    return problems


@pytest.mark.parametrize("package", PROTOCOL_PACKAGES)
def test_protocol_packages_stay_apart(package: str) -> None:
    """gossip/, raftlite/ and scheduler/ never import agent/, quart, hypercorn or each other."""
    others = {"agent", "quart", "quart_trio", "hypercorn"} | (set(PROTOCOL_PACKAGES) - {package})
    for path in python_files(package):
        tree = ast.parse(path.read_text(), filename=str(path))
        bad = sorted(m for m in imported_modules(tree) if top(m) in others)
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("package", PROTOCOL_PACKAGES)
def test_cores_do_no_io(package: str) -> None:
    """Core modules (all but driver.py) own no socket, task, clock or global randomness."""
    for path in python_files(package):
        if path.name in DRIVER_FILES:
            continue
        problems = core_violations(path)
        assert not problems, f"{path.relative_to(ROOT)}: {problems}"


def test_pure_agent_modules_do_no_io() -> None:
    """agent/node.py and agent/faults.py are pure glue, like the cores."""
    for relative in PURE_AGENT_MODULES:
        path = ROOT / relative
        if path.exists():
            assert not core_violations(path), f"{relative}: {core_violations(path)}"


def test_scripts_do_not_import_agent_internals() -> None:
    """scripts/ drive agents by CLI, HTTP and signals, never by importing them."""
    internal = {"agent", "gossip", "raftlite", "scheduler"}
    for path in python_files("scripts"):
        tree = ast.parse(path.read_text(), filename=str(path))
        bad = sorted(m for m in imported_modules(tree) if top(m) in internal)
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself reports forbidden imports (so the tests above can fail)."""
    sample = tmp_path / "bad.py"
    sample.write_text("import time\nimport random\nfrom os import urandom\nx = random.random()\n")
    problems = core_violations(sample)
    assert "imports time" in problems
    assert "imports os.urandom" in problems
    assert any("random.random" in p for p in problems)


@pytest.mark.parametrize("package", ("gossip", "raftlite", "scheduler", "agent"))
def test_packages_declare_their_public_names(package: str) -> None:
    """Each package's __init__.py lists what others may use in __all__."""
    init = ROOT / package / "__init__.py"
    if not init.exists():
        pytest.fail(f"{package}/__init__.py is missing")
    tree = ast.parse(init.read_text())
    assigned = {t.id for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
    assert "__all__" in assigned, f"{package}/__init__.py has no __all__"
