"""Session fixtures: the fixture blend and the reference runs several tests compare against."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.helpers import make_config, write_blend


@pytest.fixture(scope="session")
def blend_path(tmp_path_factory) -> Path:
    return write_blend(tmp_path_factory.mktemp("blend"))


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def ref_tp1(runs_dir, blend_path):
    """The reference: TP=1 on one process."""
    from training.run import train

    return train(make_config(runs_dir / "tp1", blend_path))


@pytest.fixture(scope="session")
def ref_tp2(runs_dir, blend_path):
    """The same run with TP=2 (two processes); also the reference for resume and export."""
    from training.run import train

    return train(make_config(runs_dir / "tp2", blend_path, "parallel.tensor=2"))


@pytest.fixture(scope="session")
def qwen_pp2(runs_dir, blend_path):
    """A Qwen3-style tiny model (QK-norm, untied output layer) with PP=2 and 4 microbatches."""
    from training.run import train

    return train(make_config(runs_dir / "qwen_pp2", blend_path, "parallel.pipeline=2",
                             "data.micro_batch_size=1", "model.qk_layernorm=true", "model.tie_embeddings=false"))
