"""HF export: transformers loads the model and the grammar tokenizer, and its logits are Megatron's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.training.helpers import REPO, molecule_texts, protein_texts, run_logos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(ref_tp2, qwen_pp2, tmp_path_factory):
    """Both reference checkpoints exported through the CLI, plus Megatron's logits on real text."""
    from grammar.tokenizer import default_tokenizer

    out = tmp_path_factory.mktemp("hf")
    llama, qwen = out / "llama", out / "qwen3"
    for checkpoint, target in ((ref_tp2.checkpoint_dir, llama), (qwen_pp2.checkpoint, qwen)):
        done = run_logos("export", "hf", str(checkpoint), "--out", str(target), timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip().endswith(str(target))
    # Two real documents (a protein chain, then a molecule), 64 tokens, as the model saw them.
    tokenizer = default_tokenizer()
    start, eod = tokenizer.prefix_ids, tokenizer.eod_id  # documents are prefix + ids + eod, as exported
    ids = [*start, *tokenizer.encode(protein_texts()[1]), eod, *start, *tokenizer.encode(molecule_texts()[0])][:64]
    assert len(ids) == 64
    ids_path = out / "ids.json"
    ids_path.write_text(json.dumps([ids]))
    logits_path = out / "megatron_logits.pt"
    done = subprocess.run([sys.executable, "tests/training/megatron_logits.py", str(logits_path), str(ids_path),
                           str(ref_tp2.checkpoint_dir), str(qwen_pp2.checkpoint)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    logits = torch.load(logits_path)
    return {"llama": (llama, logits[str(ref_tp2.checkpoint_dir)]), "qwen3": (qwen, logits[str(qwen_pp2.checkpoint)]),
            "ids": torch.tensor([ids])}


@pytest.mark.parametrize(("name", "architecture"), [("llama", "LlamaForCausalLM"), ("qwen3", "Qwen3ForCausalLM")])
def test_transformers_logits_match_megatron(exported, name, architecture):
    from transformers import AutoModelForCausalLM

    directory, megatron_logits = exported[name]
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    assert type(model).__name__ == architecture
    with torch.no_grad():
        logits = model(exported["ids"]).logits
    assert logits.shape == megatron_logits.shape
    assert torch.allclose(logits, megatron_logits, atol=1e-4, rtol=0)
    # The models are trained, not constant: the comparison is between informative predictions.
    assert megatron_logits.std(dim=-1).min() > 0.1


def test_tied_and_untied_embeddings_survive_the_export(exported):
    from transformers import AutoModelForCausalLM

    llama = AutoModelForCausalLM.from_pretrained(exported["llama"][0])
    qwen = AutoModelForCausalLM.from_pretrained(exported["qwen3"][0])
    assert llama.config.tie_word_embeddings
    assert llama.lm_head.weight.data_ptr() == llama.model.embed_tokens.weight.data_ptr()
    assert not qwen.config.tie_word_embeddings
    assert not torch.equal(qwen.lm_head.weight, qwen.model.embed_tokens.weight)


def test_auto_tokenizer_encodes_like_the_grammar_tokenizer(exported):
    from transformers import AutoTokenizer

    from grammar.tokenizer import default_tokenizer

    auto = AutoTokenizer.from_pretrained(exported["llama"][0])
    grammar = default_tokenizer()
    for text in [*molecule_texts()[:5], protein_texts()[0]]:
        assert auto(text)["input_ids"] == grammar.encode(text, special=True)
        assert auto.decode(grammar.encode(text), skip_special_tokens=True) == text
    assert (auto.bos_token_id, auto.eos_token_id, auto.pad_token_id) == (1, 2, 0)
