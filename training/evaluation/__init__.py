"""``logos eval``: does a trained model speak the grammar? Task metrics on a dataset version's test split.

- ``tasks``: each task's prompts and references, cut from test-split records in LOGOS's prompt layouts,
  and how an answer is cut out of a generated sequence (as LOGOS's inference scripts do).
- ``scoring``: the metrics, pure functions over answer strings (RDKit, pymatgen, SMACT).
- ``generate``: batched ``transformers`` generation with a KV cache (vLLM on a GPU when installed).
- ``run``: orchestration and the results JSON; ``cli``: the ``logos eval`` command.

Imports here stay light (no torch, RDKit or pymatgen at package import) so the workflow config can name
``EvalConfig`` without loading a model stack.
"""
