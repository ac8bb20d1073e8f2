"""The package's layers (docs/architecture.md): imports run downward only, and no module imports itself round."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

from conftest import REPO

PACKAGE = REPO / "finextract"
# Lowest first. A module may import from its own layer's package and from layers below; layers of one rank
# (the experiments, the audit and the tiny world all stand on the attack) do not import each other.
LAYERS = [{"io", "private_set"}, {"reporting"}, {"backbones"}, {"training"}, {"attack"},
          {"experiments", "audit", "world"}, {"workflow"}, {"__main__"}]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = REPO / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines of `if TYPE_CHECKING:` blocks: imports for annotations only, never run."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> nx.DiGraph:
    """importer → imported module, for every import that runs; `from package import module` names the module."""
    graph = nx.DiGraph()
    for path in PACKAGE.rglob("*.py"):
        importer = module_name(path)
        graph.add_node(importer)
        tree = ast.parse(path.read_text(), str(path))
        annotation_only = type_checking_lines(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import; the package imports by absolute name")
            if getattr(node, "lineno", None) in annotation_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" if is_module(f"{node.module}.{alias.name}") else node.module
                         for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            graph.add_edges_from((importer, name) for name in names if name.split(".")[0] == "finextract")
    return graph


def rank(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for number, layer in enumerate(LAYERS):
        if top in layer:
            return number
    raise AssertionError(f"{module}: in no layer of tests/test_architecture.py; add its package to LAYERS")


def test_no_import_cycles():
    graph = import_graph()
    cycles = [cycle for cycle in nx.simple_cycles(graph) if len(cycle) > 1]
    assert cycles == []


def test_imports_run_downward_only():
    upward = []
    for importer, imported in import_graph().edges:
        if imported == "finextract" or importer.split(".")[:2] == imported.split(".")[:2]:
            continue
        if rank(imported) >= rank(importer):
            upward.append(f"{importer} -> {imported}")
    assert upward == []


def test_nothing_imports_the_test_suite_or_edits_sys_path():
    offenders = []
    for folder in ("finextract", "scripts", "benchmarks", "workflow"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".smk") or path.name == "Snakefile":
                text = path.read_text()
                if "sys.path.insert" in text or "sys.path.append" in text or "from conftest" in text:
                    offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_parsing_the_workflow_imports_no_torch():
    """Every Snakemake start (a dry run, each rerun's plan) parses the workflow; the package modules its files
    import at the top level must not pull in torch, diffusers or scipy, which take seconds to import."""
    import subprocess
    import sys

    workflow_files = [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    imports = [line for path in workflow_files for line in path.read_text().splitlines()
               if line.startswith(("from finextract", "import finextract"))]
    assert imports, "no package imports found in the workflow files"
    probe = "\n".join([*imports, "import sys", "print(' '.join(sorted(m for m in ('torch', 'diffusers', 'scipy') "
                                               "if m in sys.modules)))"])
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"parsing the workflow imports {loaded}"
