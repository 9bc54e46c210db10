"""A clustering in words (the GUI's lines, the CLI's line) and on disk."""

from __future__ import annotations

import numpy as np
import pytest

from phenossl.clustering import cluster
from phenossl.clustering_report import describe_ami, format_ami, report_dict


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 1, (40, 4)), rng.normal(8, 1, (40, 4))])
    return points.astype(np.float32), np.repeat(["DMSO", "taxol"], 40)


def _report(points, labels, column="compound", **options):
    result = cluster(points, labels, k=2, seed=0, **options)
    if labels is not None:
        result.composition.columns.name = column
    return report_dict(result, label_column=column if labels is not None else None, n_cells=80)


def test_two_label_values_give_the_ami_its_control_and_its_meaning(blobs):
    report = _report(*blobs)
    headline, detail = describe_ami(report)
    assert headline == f"AMI vs compound: {report['ami']:.3f}" and report["ami"] > 0.9
    assert detail.startswith(
        f"randomised compound labels: {report['ami_control_mean']:.3f} "
        f"± {report['ami_control_std']:.3f}. AMI: how well the clusters match"
    )
    assert format_ami(report) == (
        f"AMI (compound, K=2, 80 cells): {report['ami']:.3f}   randomised-label control: "
        f"{report['ami_control_mean']:.3f} ± {report['ami_control_std']:.3f}"
    )


def test_one_label_value_makes_the_ami_undefined_not_zero(blobs):
    points, _ = blobs
    report = _report(points, np.full(80, "DMSO"))
    assert report["ami"] == 0.0  # what the formula gives; the words must not show it
    headline, detail = describe_ami(report)
    assert headline == "AMI vs compound: undefined (every cell has compound DMSO)"
    assert "needs at least two compound values" in detail
    assert format_ami(report) == (
        "AMI (compound, K=2, 80 cells): undefined (every cell has compound DMSO)"
    )


def test_without_labels_or_control_nothing_is_made_up(blobs):
    points, labels = blobs
    unlabelled = _report(points, None)
    assert describe_ami(unlabelled) == ("AMI: no label column to score against", "")
    assert format_ami(unlabelled).endswith("cells): no label column to score against")
    no_control = _report(points, labels, n_permutations=0)
    headline, detail = describe_ami(no_control)
    assert headline.startswith("AMI vs compound: ") and "randomised" not in detail
    assert "randomised" not in format_ami(no_control)
