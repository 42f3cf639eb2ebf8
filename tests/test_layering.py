"""House rules: utils/ imports nothing from models/, data/ or distill/; files stay small; no eval/exec."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "utils", "data", "distill")
FORBIDDEN_FOR = {
    "utils": {"models", "data", "distill", "train", "train_kd", "val", "detect", "export"},
    "models": {"data", "distill", "train", "train_kd", "val", "detect", "export"},
    "data": {"models", "distill", "train", "train_kd", "val", "detect", "export"},
    "distill": {"data", "train", "train_kd", "val", "detect", "export"},
}
MAX_LINES = 500
SIZE_ALLOW = {}  # path -> justification, for files that must exceed MAX_LINES


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def package_files(pkg):
    return sorted((ROOT / pkg).rglob("*.py"))


def test_import_direction():
    bad = []
    for pkg, forbidden in FORBIDDEN_FOR.items():
        for f in package_files(pkg):
            if pkg == "data" and "scripts" in f.parts:
                continue  # CLI scripts may use anything
            hits = imported_roots(f) & forbidden
            if hits:
                bad.append(f"{f.relative_to(ROOT)} imports {sorted(hits)}")
    assert not bad, "\n".join(bad)


def test_utils_has_no_grab_bag_modules_and_empty_init():
    assert not {"general.py", "misc.py", "common.py"} & {f.name for f in (ROOT / "utils").glob("*.py")}
    assert (ROOT / "utils" / "__init__.py").read_text().strip() == ""


def test_file_size_budget():
    big = []
    for pkg in PACKAGES:
        for f in package_files(pkg):
            n = len(f.read_text(encoding="utf-8").splitlines())
            rel = str(f.relative_to(ROOT))
            if n > MAX_LINES and rel not in SIZE_ALLOW:
                big.append(f"{rel}: {n} lines")
    assert not big, big


def test_no_eval_or_exec_calls():
    offenders = []
    for f in [p for pkg in PACKAGES for p in package_files(pkg)] + sorted(ROOT.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"eval", "exec"}:
                offenders.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
