"""The folder tree is the import tree: each subsystem imports the others by relative imports, and only those
on a lower layer (signatures <- programs <- runs and optimizers <- CLI)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "assets": 0, "signatures": 0,
    "data": 1, "serving": 1, "metrics": 1,
    "programs": 2,
    "runner": 3,
    "optimizers": 4, "experiments": 4,
    "cli": 5,
}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, the subsystem or absolute module) of each import of drpkit code in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("drpkit"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("drpkit")]
    return found


def test_every_folder_is_a_subsystem_on_a_layer():
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages == set(LAYERS)


def test_subsystems_import_only_downward_and_relatively():
    wrong = []
    for folder, layer in LAYERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            for line, target in imports(path):
                where = f"{path.relative_to(ROOT)}:{line} imports {target}"
                if target.startswith("drpkit"):
                    wrong.append(f"{where} by its absolute name: use a relative import")
                elif target not in LAYERS:
                    wrong.append(f"{where}, which is no subsystem")
                elif LAYERS[target] >= layer and target != folder:
                    wrong.append(f"{where} on layer {LAYERS[target]}, not below {folder}'s {layer}")
    assert not wrong, "\n".join(wrong)
