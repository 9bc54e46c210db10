"""The ``Examples`` sections of the public API's docstrings run, and print what they show.

Each example runs in a fresh temporary folder (some write files). Examples that would need real
data or a download are marked ``# doctest: +SKIP`` in the docstring itself.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

#: the top-level API (``phenossl.__init__``), then the pure core, then the helpers with examples
MODULES = [
    "phenossl.data.fields",
    "phenossl.data.bbbc021",
    "phenossl.data.synthetic",
    "phenossl.cells.segment",
    "phenossl.cells.crops",
    "phenossl.cells.import_crops",
    "phenossl.cells.features",
    "phenossl.embedding",
    "phenossl.clustering",
    "phenossl.profiles",
    "phenossl.profile_report",
    "phenossl.ssl.losses",
    "phenossl.training.evaluate.metrics",
    "phenossl.training.evaluate.collapse",
    "phenossl.training.train.config",
    "phenossl.training.train.optim",
    "phenossl.augment.views",
    "phenossl.models.backbones",
    "phenossl.models.pretrained",
    "phenossl.data.image_dataset",
    "phenossl.data.plate_layout",
    "phenossl.data.array_fields",
    "phenossl._atomic",
    "phenossl._json",
    "phenossl._lock",
    "phenossl._memory",
    "phenossl._prefetch",
    "phenossl._progress",
    "phenossl._scaling",
    "phenossl.data.cropset",
    "phenossl.cluster_view",
    "phenossl.clustering_report",
    "phenossl.pipeline",
    "phenossl.export",
    "phenossl._device",
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for name in MODULES:
        tests = finder.find(importlib.import_module(name))
        found += sorted((t for t in tests if t.examples), key=lambda t: t.name)
    return found


EXAMPLES = _examples()


def test_every_listed_module_has_examples():
    with_examples = {t.name.rsplit(".", 1)[0] for t in EXAMPLES} | {t.name for t in EXAMPLES}
    assert not [m for m in MODULES if not any(n.startswith(m) for n in with_examples)]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda t: t.name.removeprefix("phenossl."))
def test_docstring_example(example: doctest.DocTest, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    result = runner.run(example, out=report.append, clear_globs=False)
    assert result.failed == 0, "".join(report)
