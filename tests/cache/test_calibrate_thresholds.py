"""Threshold calibration and writing them to a config file, as library functions (what
`tars-opt cache calibrate` calls), with an embedder whose similarities are known."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tars_opt.cache.calibrate import Pairs, calibrate_thresholds, write_thresholds
from tars_opt.config.loader import EXAMPLE_CONFIG, load_config
from tars_opt.config.schema import CacheSemanticConfig
from tars_opt.errors import ConfigError


class AngleEmbedder:
    """Unit vectors in the plane at fixed angles: a pair's similarity is cos(difference)."""

    def __init__(self, angles: dict[str, float]) -> None:
        self.angles = angles

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.array([[math.cos(self.angles[t]), math.sin(self.angles[t])] for t in texts])


def pairs_and_embedder() -> tuple[Pairs, AngleEmbedder]:
    """12 duplicates at similarity 0.95, 12 different pairs at 0.5."""
    a, b, labels, angles = [], [], [], {}
    for k in range(24):
        same = k < 12
        first, second = f"question {k} asked", f"question {k} asked again"
        angles[first] = 0.1 * k
        angles[second] = 0.1 * k + math.acos(0.95 if same else 0.5)
        a.append(first)
        b.append(second)
        labels.append(same)
    return Pairs(a, b, np.array(labels)), AngleEmbedder(angles)


def test_each_type_gets_the_lowest_threshold_within_its_target() -> None:
    pairs, embedder = pairs_and_embedder()
    semantic = CacheSemanticConfig(target_false_hit_rate={"fact": 0.1})
    rows = calibrate_thresholds(semantic, pairs, embedder, ["fact", "other"], guards=False)
    fact, other = rows
    assert fact["type"] == "fact" and fact["target"] == 0.1 and fact["guards"] is False
    assert fact["threshold"] == pytest.approx(0.95, abs=1e-4)
    assert (fact["hits"], fact["false_hits"], fact["recall"]) == (12, 0, 1.0)
    # No target in the config: 1%, which 24 pairs cannot show, so no semantic hits.
    assert other["target"] == 0.01 and other["threshold"] is None
    # A target given wins over the config's.
    loose = calibrate_thresholds(semantic, pairs, embedder, ["other"], target=0.6, guards=False)
    assert loose[0]["threshold"] == pytest.approx(0.5, abs=1e-4) and loose[0]["hits"] == 24


def test_written_thresholds_load_back_and_the_comments_stay(tmp_path: Path) -> None:
    config = tmp_path / "performance-config.yaml"
    config.write_text(EXAMPLE_CONFIG.read_text())
    write_thresholds(config, {"fact": 0.9123})
    thresholds = load_config(config).config.cache.semantic.thresholds
    assert thresholds["fact"] == 0.9123
    assert "Shipped values: `tars-opt cache calibrate" in config.read_text()
    assert [p.name for p in tmp_path.iterdir()] == [config.name]


def test_an_edit_that_does_not_load_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    config = tmp_path / "performance-config.yaml"
    flow = "cache: {semantic: {thresholds: {fact: 0.9}}}\n"
    config.write_text(flow)
    with pytest.raises(ConfigError):
        write_thresholds(config, {"fact": 0.95})
    assert config.read_text() == flow
    assert [p.name for p in tmp_path.iterdir()] == [config.name]
