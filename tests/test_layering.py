"""House rules: who imports whom, no import cycles, files and functions stay small, no eval/exec.

Layers, bottom up: utils -> models, data -> distill, engine -> the scripts (train.py, train_kd.py, val.py,
detect.py, export.py). distill/ may use engine only for the step contract (engine/step.py).
"""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "utils", "data", "distill", "engine")
SCRIPTS = ("train", "train_kd", "val", "detect", "export", "hubconf")
FORBIDDEN_FOR = {
    "utils": {"models", "data", "distill", "engine", *SCRIPTS},
    "models": {"data", "distill", "engine", *SCRIPTS},
    "data": {"models", "distill", "engine", *SCRIPTS},
    "distill": {"data", *SCRIPTS},
    "engine": {"distill", *SCRIPTS},
}
SCRIPT_IMPORTS = {"train": {"val"}, "train_kd": {"train"}}  # the scripts a script may import
MAX_LINES = 450
MAX_FUNCTION_LINES = 60
SIZE_ALLOW = {}  # path -> justification, for files that must exceed MAX_LINES


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (type hints, never imported at run time)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *runtime_nodes(child)])
            continue
        yield node
        yield from runtime_nodes(node)


def imported_modules(path: Path) -> set[str]:
    """Dotted names of everything ``path`` imports at run time, lazy imports inside functions included;
    ``from pkg import mod`` counts as ``pkg.mod`` when ``mod`` is a module of the repository."""
    names = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return names


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def project_files() -> list[Path]:
    files = [f for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py"))]
    return files + [ROOT / f"{s}.py" for s in SCRIPTS]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_import_direction():
    bad = []
    for f in project_files():
        rel = f.relative_to(ROOT)
        roots = {name.split(".")[0] for name in imported_modules(f)}
        if rel.parts[0] in FORBIDDEN_FOR:
            if rel.parts[0] == "data" and "scripts" in rel.parts:
                continue  # CLI scripts may use anything
            hits = roots & FORBIDDEN_FOR[rel.parts[0]]
        else:  # a script
            hits = roots & set(SCRIPTS) - SCRIPT_IMPORTS.get(rel.stem, set()) - {rel.stem}
        if rel.parts[0] == "distill":
            hits |= {n for n in imported_modules(f) if n.startswith("engine.") and n != "engine.step"}
        if hits:
            bad.append(f"{rel} imports {sorted(hits)}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {}
    for f in project_files():
        deps = {module_name(module_file(n)) for n in imported_modules(f) if module_file(n)}
        graph[module_name(f)] = deps - {module_name(f)}
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_cycle_detector_sees_a_cycle(tmp_path, monkeypatch):
    """The cycle test must be able to fail: two modules importing each other are reported."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("from pkg.a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", ("pkg",))
    monkeypatch.setattr(sys.modules[__name__], "SCRIPTS", ())
    try:
        test_no_import_cycles()
    except AssertionError as e:
        assert "pkg.a -> pkg.b -> pkg.a" in str(e)
    else:
        raise AssertionError("the cycle pkg.a <-> pkg.b was not reported")


def test_utils_has_no_grab_bag_modules_and_empty_init():
    assert not {"general.py", "misc.py", "common.py"} & {f.name for f in (ROOT / "utils").glob("*.py")}
    assert (ROOT / "utils" / "__init__.py").read_text().strip() == ""


def test_file_size_budget():
    big = []
    for f in project_files():
        n = len(f.read_text(encoding="utf-8").splitlines())
        rel = str(f.relative_to(ROOT))
        if n > MAX_LINES and rel not in SIZE_ALLOW:
            big.append(f"{rel}: {n} lines")
    assert not big, big


def test_function_size_budget():
    long = []
    for f in project_files():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long, long


def test_no_eval_or_exec_calls():
    offenders = []
    for f in project_files() + sorted(ROOT.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"eval", "exec"}:
                offenders.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
