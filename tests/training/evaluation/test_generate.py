"""Generation: prompts encoded as ``tokenizer(prompt)`` does (a post-processor's trailing eos dropped), left
padded batches equal to one-prompt-at-a-time ``model.generate``, fixed seeds, answers cut as LOGOS cuts them."""

from __future__ import annotations

import pytest
import torch
from tokenizers import processors
from transformers import PreTrainedTokenizerFast

from grammar.tokenizer import default_tokenizer
from training.evaluation.generate import Generator, SamplingSettings, TransformersGenerator
from training.evaluation.tasks import TASKS, extract_answer

PROMPTS = ["<MoleculeS>CC(=O)Oc1ccccc1C(=O)O<MoleculeE><ReverseReact>", "<MoleculeS>CCO<MoleculeE><ReverseReact>",
           "<MoleculeS>c1ccc2ccccc2c1<MoleculeE><ReverseReact>"]


def hf_tokenizer(template: str) -> PreTrainedTokenizerFast:
    grammar = default_tokenizer()
    backend = grammar.hf.__class__.from_str(grammar.hf.to_str())
    backend.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[("<bos>", grammar.bos_id), ("<eos>", grammar.eos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


@pytest.mark.parametrize("template", ["<bos> $A <eos>", "<bos> $A"])
def test_prompts_never_end_in_an_added_eos(template):
    tokenizer = hf_tokenizer(template)
    generator = Generator(tokenizer, None)
    expected = [tokenizer.bos_token_id, *default_tokenizer().encode(PROMPTS[1])]
    assert generator.encode_prompt(PROMPTS[1]) == expected
    # An eos the prompt text itself ends with is the prompt's, not the post-processor's: kept.
    assert generator.encode_prompt("<MoleculeS>C<MoleculeE><eos>")[-1] == tokenizer.eos_token_id


def test_left_padded_batches_equal_one_prompt_at_a_time(tiny_model):
    generator = TransformersGenerator(tiny_model)
    settings = SamplingSettings(samples=1, temperature=0, max_new_tokens=6, batch_size=3)
    batched = generator.generate(PROMPTS, None, settings)
    for prompt, (sequence,) in zip(PROMPTS, batched.sequences, strict=True):
        ids = torch.tensor([generator.encode_prompt(prompt)])
        plain = generator.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=6, repetition_penalty=settings.repetition_penalty,
                                         eos_token_id=generator.eos_id, pad_token_id=generator.pad_id)
        assert sequence == generator.tokenizer.decode(plain[0], skip_special_tokens=False)
        assert sequence.startswith("<bos>" + prompt)


def test_sampling_is_reproducible_with_its_seed(tiny_model):
    generator = TransformersGenerator(tiny_model)
    settings = SamplingSettings(samples=2, max_new_tokens=5, batch_size=2)
    first = generator.generate(PROMPTS, None, settings)
    assert first.sequences == generator.generate(PROMPTS, None, settings).sequences
    assert first.new_tokens == 3 * 2 * 5  # an untrained model never writes eos in 5 tokens here
    other = generator.generate(PROMPTS, None, SamplingSettings(samples=2, max_new_tokens=5, batch_size=2, seed=7))
    assert other.sequences != first.sequences


def test_answers_are_cut_after_the_task_token_up_to_the_first_stop():
    retro = TASKS["retrosynthesis"]
    sequence = "<bos><MoleculeS>CCO<MoleculeE><ReverseReact><MoleculeS>CC<MoleculeE><MoleculeS>O<MoleculeE><eos><pad>"
    assert extract_answer(retro, sequence) == "<MoleculeS>CC<MoleculeE><MoleculeS>O<MoleculeE>"
    assert extract_answer(retro, "<MoleculeS>CC<MoleculeE><|end_of_text|>junk") == "<MoleculeS>CC<MoleculeE>"
    ligand = TASKS["ligand_design"]
    assert extract_answer(ligand, "<ProteinS>M<PocketS>K<PocketE><ProteinE><MoleculeS>CCN<MoleculeE>C") == "CCN"


@pytest.mark.parametrize("style", ["llama3", "qwen3"])
def test_a_model_with_an_extended_tokenizer(style, eval_dataset, tmp_path):
    """LOGOS's kind of model: a base LLM tokenizer plus the grammar tags. Prompts are prefix + encode(prompt)
    as the tokenizer itself defines them, the eod ends documents, the task's end tag stops generation."""
    from dataclasses import replace

    from transformers import LlamaConfig, LlamaForCausalLM

    from grammar.hf_extend import ExtendedTokenizer
    from tests.grammar.base_tokenizers import make_base_tokenizer
    from training.evaluation.run import EvalConfig, evaluate

    extended = ExtendedTokenizer.build(make_base_tokenizer(style, tmp_path / "base"))
    model_dir = extended.save(tmp_path / "model")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=extended.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         pad_token_id=extended.pad_id, eos_token_id=extended.eod_id)
    LlamaForCausalLM(config).save_pretrained(model_dir)
    generator = TransformersGenerator(model_dir)
    assert generator.encode_prompt(PROMPTS[0]) == [*extended.prefix_ids, *extended.encode(PROMPTS[0])]
    assert generator.eod_id == extended.eod_id
    assert generator.document_ids("<MoleculeS>C<MoleculeE>")[-1] == extended.eod_id
    # The same test records, registered as tokenized with this tokenizer (evaluation re-encodes the text).
    store = eval_dataset.store
    manifest = replace(store.manifest(eval_dataset.ref), version=f"{style}000000000000"[:16],
                       tokenizer_hash=extended.content_hash)
    (store.root / manifest.name / "manifests" / f"{manifest.version}.json").write_text(manifest.to_json())
    try:
        results = evaluate(model_dir, manifest.ref, EvalConfig(tasks=["ligand_design", "perplexity"], limit=1,
                                                               max_new_tokens=4), tmp_path / "out", store)
    finally:
        (store.root / manifest.name / "manifests" / f"{manifest.version}.json").unlink()
    assert results["model"]["tokenizer_hash"] == extended.content_hash
    assert results["tasks"]["ligand_design"]["metrics"]["validity"]["count"] == 1
    assert results["tasks"]["perplexity"]["metrics"]["all"]["count"] > 0
