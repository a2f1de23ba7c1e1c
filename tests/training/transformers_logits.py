"""Load an exported model directory with whichever transformers is importable and record what it sees.

Run as a subprocess, so that the HF-export tests can load the same directory under transformers 4.x
(``PYTHONPATH=.venv/transformers4``, see install_transformers4.sh) and 5.x (the venv):
``python tests/training/transformers_logits.py MODEL_DIR IDS.json OUT.pt``. OUT holds the logits of
the ids, the transformers version, the RoPE the loaded model actually uses, and the tokenizer's view
(special ids, a LOGOS prompt's ids and their decoding).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

PROMPT = "<MoleculeS>CC(=O)Oc1ccccc1C(=O)O<MoleculeE><ReverseReact>"  # a LOGOS retrosynthesis prompt


def main(model_dir: str, ids_path: str, out: str) -> None:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = torch.tensor(json.loads(Path(ids_path).read_text()))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        logits = model(ids).logits
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    rotary = model.model.rotary_emb
    torch.save({
        "version": transformers.__version__,
        "architecture": type(model).__name__,
        "logits": logits,
        "inv_freq": rotary.inv_freq.clone(),
        "attention_scaling": float(rotary.attention_scaling),
        "special_ids": [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id],
        "config_special_ids": [model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id],
        "tied": model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(),
        "prompt_ids": prompt_ids,
        "prompt_decoded": tokenizer.decode(prompt_ids, skip_special_tokens=False),
    }, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
