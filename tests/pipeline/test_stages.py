"""The dataset-stage registry: one name per stage everywhere, typed configs whose typos are errors."""

from __future__ import annotations

import argparse

import pytest

from pipeline.options import ConfigError, from_mapping
from pipeline.stages import REGISTRY, SplitSettings
from workflows.cli import build_parser, main


def test_each_stage_has_one_name_in_the_dag_the_cli_and_the_targets():
    from hamilton import driver

    from workflows import dag
    from workflows.config import TARGETS

    assert list(REGISTRY) == ["dedup", "split", "mix", "export"]
    nodes = {v.name: v for v in driver.Builder().with_modules(dag).build().list_available_variables()}
    for stage in REGISTRY.values():
        assert stage.name in TARGETS
        assert stage.upstream in nodes[stage.name].required_dependencies  # the DAG edge the stage declares
        assert f"{stage.name}_settings" in nodes[stage.name].required_dependencies
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"dedup", "split", "mix"} <= set(commands)
    formats = next(a for a in commands["export"]._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert "megatron" in formats


def test_a_typo_in_a_choice_names_the_field_and_the_allowed_values(capsys):
    with pytest.raises(ConfigError) as caught:
        from_mapping(SplitSettings, {"config": {"proteins": {"method": "mmseq"}}}, path="split")
    message = str(caught.value)
    assert "split.config.proteins.method" in message and "'mmseq'" in message
    assert all(repr(choice) in message for choice in ("auto", "mmseqs", "minhash"))
    # The same through a workflow config and through the CLI.
    from workflows.config import load_workflow

    with pytest.raises(ConfigError, match=r"split\.config\.proteins\.method: 'mmseq' is not one of"):
        load_workflow("demo", ["split.config.proteins.method=mmseq"])
    with pytest.raises(ConfigError, match=r"dedup: near\.domains: 'protien' is not a domain \(known: protein, "):
        from_mapping(REGISTRY["dedup"].config, {"near": {"domains": ["protien"]}}, path="dedup")
    assert main(["split", "d", "--protein-clustering", "mmseq", "--store", "/nonexistent"]) == 2
    assert "split.config.proteins.method: 'mmseq' is not one of" in capsys.readouterr().err


def test_logos_starts_without_the_stages_heavy_imports():
    """Building the parser reads the light registry only; a stage's module (and the computations it imports)
    loads when it runs or its --help prints (the help then shows the dataclass's default and choices)."""
    import subprocess
    import sys

    heavy = ("pipeline.stages.dedup", "pipeline.stages.split", "pipeline.split", "pipeline.near_dedup")
    probe = f"import sys; import workflows.cli as c; c.build_parser(); print([m for m in {heavy} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    shown = subprocess.run([sys.executable, "-m", "workflows.cli", "split", "--help"], capture_output=True, text=True)
    assert "one of auto, mmseqs, minhash; default: auto" in " ".join(shown.stdout.split())


def test_cli_flags_set_the_config_defaults_come_from_the_dataclass(capsys):
    from pipeline.dataset_cli import _stage_config
    from pipeline.near_dedup import NearDedupConfig

    parser = build_parser()
    args = parser.parse_args(["dedup", "in", "--near-domains", "all", "--source-priority", "smiles, chembl",
                              "--bucket-rows", "300"])
    config = _stage_config(REGISTRY["dedup"], args)
    assert config.near.domains is None and config.near.threshold == NearDedupConfig().threshold
    assert config.exact.source_priority == config.near.source_priority == ("smiles", "chembl")
    assert config.streaming is not None and config.streaming.bucket_rows == 300
    assert _stage_config(REGISTRY["dedup"], parser.parse_args(["dedup", "in", "--no-near"])).near is None
    split = _stage_config(REGISTRY["split"], parser.parse_args(["split", "in", "--time-split", "2012:2015",
                                                                "--fractions", "0.8,0.1,0.1"]))
    assert (split.config.time_split.valid_from, split.config.time_split.test_from) == (2012, 2015)
    assert split.config.fractions == (0.8, 0.1, 0.1)
    code = main(["mix", "in", "--temperature", "warm", "--store", "/nonexistent"])
    assert code == 2 and "mix.temperature" in capsys.readouterr().err


def test_token_counts_come_in_one_order_whatever_the_row_order():
    """mix() sums weights in the dicts' order: an order that follows the rows (or a threaded group_by) made
    float weights differ in the last bits between runs of one version (seen as two different blends)."""
    import polars as pl

    from pipeline.stages.mix import token_counts

    frame = pl.DataFrame({"split": ["train", "test", "valid", "test"] * 50, "domain": ["a", "b", "c", "d"] * 50,
                          "n_tokens": list(range(200))})
    orders = {tuple((split, tuple(domains)) for split, domains in token_counts(
        frame.sample(fraction=1.0, shuffle=True, seed=seed).lazy())[0].items()) for seed in range(20)}
    assert orders == {(("test", ("b", "d")), ("train", ("a",)), ("valid", ("c",)))}
