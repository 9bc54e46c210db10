"""The import contract: which parts of the package may import which (read from the source).

Every ``import`` statement counts, also the lazy ones inside functions, so a GUI or trainer
import cannot slip into the library by being deferred.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "phenossl"
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy", "superqt")

TRAIN = "phenossl.training.train"
EVALUATE = "phenossl.training.evaluate"
SWEEP = "phenossl.training.sweep"
ANALYSIS = "phenossl.training.analysis"

# (modules under this prefix, may not import these prefixes); every arrow points down a floor
RULES = [
    ("phenossl", ("phenossl.napari", *GUI)),  # the library: no GUI (phenossl.napari excepted)
    ("phenossl", ("phenossl.cli",)),  # nor the command line (phenossl.cli excepted)
    ("phenossl.ssl", ("phenossl.training",)),  # methods and losses know no trainer
    ("phenossl.models", ("phenossl.ssl", "phenossl.training")),  # backbones know no method
    ("phenossl.data", ("phenossl.cells", "phenossl.training")),  # pixels know no cell nor trainer
    # the researcher's flow: train -> evaluate; sweep uses both; analysis reads a frame only
    (EVALUATE, (TRAIN, SWEEP, ANALYSIS)),
    (TRAIN, (SWEEP, ANALYSIS)),
    (ANALYSIS, (TRAIN, EVALUATE, SWEEP)),
]
EXEMPT = {"phenossl.napari", "phenossl.cli", "phenossl.__main__"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = {_module(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize(
    ("scope", "forbidden"), RULES, ids=[f"{r[0]}-not-{r[1][0]}" for r in RULES]
)
def test_the_import_contract_holds(scope, forbidden):
    broken = [
        f"{module} imports {name}"
        for module, names in MODULES.items()
        if _within(module, scope) and not any(_within(module, e) for e in EXEMPT)
        for name in sorted(names)
        if any(_within(name, f) for f in forbidden)
    ]
    assert broken == []


def test_the_contract_sees_lazy_imports():
    # phenossl.napari imports napari inside functions too; the scan must see both kinds
    assert any(_within(n, "napari") for n in MODULES["phenossl.napari._widgets._segment"])
    assert len(MODULES) > 80


def test_the_training_sub_packages_exist():
    # the contract names them: a rename must update the rules, not silently empty them
    for package in (TRAIN, EVALUATE, SWEEP, ANALYSIS):
        assert package in MODULES
        assert any(_within(m, package) and m != package for m in MODULES)


def test_the_training_package_is_only_its_stages():
    # new training code goes into one of the four stages, never flat beside them
    flat = [
        m
        for m in MODULES
        if _within(m, "phenossl.training")
        and m.count(".") == 2
        and m not in (TRAIN, EVALUATE, SWEEP, ANALYSIS)
    ]
    assert flat == []
