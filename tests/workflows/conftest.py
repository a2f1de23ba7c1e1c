"""Fixtures shared by the workflow tests."""

from __future__ import annotations

import pytest

from workflows.runner import run_workflow


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """One uninterrupted run of the whole demo DAG (ingest ... train, HF export, evaluation, report): the
    slowest fixture of the suite, so every test that needs a real workflow run shares this one."""
    home = tmp_path_factory.mktemp("demo") / "home"
    return home, run_workflow("demo", [f"home={home}"])
