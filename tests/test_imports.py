"""The package's modules import one another without a cycle, counting every import: at the top,
inside functions and under ``if TYPE_CHECKING``. Read from the source with ``ast``, so a cycle
that Python would only meet at run time (or never, for type checking) is found all the same.
Imports also point one way, from the command down to decoding: each module has a layer
(docs/architecture.md) and imports only modules of its own layer or below."""

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "scnn"

# The layers of docs/architecture.md, bottom up; a package's entry covers its modules.
LAYERS: tuple[tuple[str, ...], ...] = (
    # 0 base: errors, atomic files, records, process settings
    ("errors", "fileio", "records", "allocator", "precision", "compiling", "bundled_data",
     "distributed", "checkpoint", "kernels", "loss"),
    # 1 decoding
    ("video", "video_source", "parallel_decode", "encode"),
    # 2 data: windows, clips, files, training samples, the synthetic dataset
    ("windows", "clips", "formats", "dataset", "synth", "caffe_wire"),
    # 3 model and scoring: networks, configs, model directories, post-processing, evaluation
    ("model", "res3d", "config", "boundary_clips", "boundary_refiner", "modelfile", "postprocess",
     "evaluate", "stages", "report", "runtime"),
    # 4 the method: streaming detection, training, the Caffe import, the diagnosis
    ("pipeline", "lanes", "detect", "caffe", "caffe_res3d", "pretrained", "train",
     "boundary_training", "diagnose",
     "features", "training_log"),
    # 5 runs over many files: batches, torchrun shards, the HTML report, the demo
    ("batch", "sharded", "html_report", "demo", "live",
     "feature_runs", "resume", "training_job"),
    # 6 the command
    ("cli", "__main__", ""),
)  # fmt: skip


def module_name(path: Path, root: Path) -> str:
    """``scnn.formats.parsing`` for ``root/formats/parsing.py``; a package's ``__init__.py`` is
    the package."""
    parts = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that the module ``name`` imports. ``from a import b`` reads
    module ``a.b`` when there is one, else module ``a``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                base = package.rsplit(".", node.level - 1)[0]  # level 1: the package itself
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # import scnn.a.b.Name → scnn.a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root``, with the package modules it imports."""
    paths = sorted(root.rglob("*.py"))
    names = {path: module_name(path, root) for path in paths}
    modules = set(names.values())
    return {
        names[path]: imported_modules(
            ast.parse(path.read_text(encoding="utf-8"), str(path)),
            names[path],
            path.name == "__init__.py",
            modules,
        )
        for path in paths
    }


def find_cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as a path that ends where it starts, or [] if none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> Iterator[list[str]]:
        if node in path:
            yield [*path[path.index(node) :], node]
            return
        if node in done:
            return
        for child in sorted(graph.get(node, ())):
            yield from visit(child, [*path, node])
        done.add(node)

    for start in sorted(graph):
        for cycle in visit(start, []):
            return cycle
    return []


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def test_the_graph_counts_every_kind_of_import(tmp_path):
    root = write_package(
        tmp_path / "pkg",
        {
            "__init__.py": "from pkg.a import A\n",
            "a.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.b import B\n",
            "b.py": "def f():\n    from pkg import sub\n",
            "sub/__init__.py": "from . import leaf\n",
            "sub/leaf.py": "import pkg.a\nfrom ..b import f\nfrom .. import c\n",
            "c.py": "import os\n",
        },
    )
    assert import_graph(root) == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub"},
        "pkg.c": set(),
        "pkg.sub": {"pkg.sub.leaf"},
        "pkg.sub.leaf": {"pkg.a", "pkg.b", "pkg.c"},
    }


def test_a_cycle_is_found_and_a_tree_has_none():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert {"scnn", "scnn.cli", "scnn.records", "scnn.formats"} <= set(graph)
    assert find_cycle(graph) == []


def layer(module: str) -> int:
    """The layer of ``scnn.a.b``: that of its longest listed prefix (``""``: the package)."""
    parts = module.split(".")[1:]
    prefixes = [".".join(parts[:end]) for end in range(len(parts), 0, -1)] or [""]
    for name in prefixes:
        for number, names in enumerate(LAYERS):
            if name in names:
                return number
    raise AssertionError(f"{module} has no layer in LAYERS")


def test_imports_point_down_the_layers():
    graph = import_graph(PACKAGE)
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer(target) > layer(module)
    ]
    assert upward == []
