"""training.evaluate.collapse: effective rank and per-dimension spread flag collapsed features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phenossl.training.evaluate.collapse import collapse_stats, effective_rank


def test_effective_rank_of_known_spectra():
    rng = np.random.default_rng(0)
    assert effective_rank(rng.normal(size=(4000, 8))) == pytest.approx(8, abs=0.1)
    line = rng.normal(size=(100, 1)) * rng.normal(size=(1, 16))
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(np.ones((10, 4))) == 0.0  # one point: complete collapse
    # two directions with equal variance: rank 2, whatever the ambient dimension
    plane = np.zeros((400, 32))
    plane[:, :2] = rng.choice([-1.0, 1.0], size=(400, 2))
    assert effective_rank(torch.from_numpy(plane)) == pytest.approx(2.0, abs=0.05)


def test_collapse_verdicts():
    rng = np.random.default_rng(1)
    spread = collapse_stats(rng.normal(size=(500, 64)))
    assert not spread["collapsed"]
    assert spread["std_normalised"] == pytest.approx(1.0, abs=0.05)
    assert collapse_stats(np.tile(rng.normal(size=(1, 64)), (50, 1)))["collapsed"]
    nearly = rng.normal(size=(1, 64)) + 1e-4 * rng.normal(size=(200, 64))
    assert collapse_stats(nearly)["std_normalised"] < 0.1


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\(N >= 2, D\)"):
        collapse_stats(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        effective_rank(np.array([[0.0, np.nan], [1.0, 2.0]]))
