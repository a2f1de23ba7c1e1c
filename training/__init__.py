"""Megatron-Core pretraining of a LOGOS-style model on the dataset stage's blends.

Entry points (heavy imports happen inside them):

- ``training.config.load_config(path, overrides) -> TrainConfig`` and ``training.presets`` (tiny, 1b, 3b, 8b)
- ``training.run.train(config) -> TrainResult``: launch the ranks (local or Ray Train) and wait
- ``training.rank.run_rank(config)``: what each rank runs
- ``training.hf_export.export_hf(checkpoint, out)``: transformers Llama/Qwen3 + grammar tokenizer
- CLI: ``logos train``, ``logos launch``, ``logos export hf`` (``training.cli``)
"""
