"""Small local stand-ins for the Llama-3 and Qwen3 base tokenizers (no network, no hub).

A byte-level BPE is trained here with HF ``tokenizers`` on real text from ``tests/data``: ChEMBL
SMILES, protein sequences from the mmCIF fixtures, the English of PROVENANCE.md. The special tokens
follow the real layouts, which is what the extension and the exports must preserve:

- ``llama3``: Llama-3.1/3.2's 256 specials right after the BPE vocabulary, in Llama's order
  (``<|begin_of_text|>``, ``<|end_of_text|>``, reserved 0-1, ``<|finetune_right_pad_id|>``, reserved 2,
  header ids, ``<|eom_id|>``, ``<|eot_id|>``, ``<|python_tag|>``, then reserved tokens to the end), a
  post-processor that prefixes ``<|begin_of_text|>``, no pad token, ``PreTrainedTokenizerFast`` config.
  ``reserved`` changes how many trailing reserved tokens there are (Llama's 245 by default; more makes
  a vocabulary past uint16 without training a huge BPE).
- ``qwen3``: ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` ... after the BPE vocabulary, no bos,
  a ByteLevel post-processor that adds nothing, pad ``<|endoftext|>``, ``Qwen2Tokenizer`` config.

``make_base_tokenizer(style, out_dir)`` writes the directory; other tests (HF import/export, training)
reuse it.
"""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

DATA = Path(__file__).parents[1] / "data"
BPE_VOCAB_SIZE = 1200

# The pre-tokenizer split patterns of the real tokenizer.json files.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_RESERVED = 245  # 128011 .. 128255 in Llama-3.1/3.2


def llama3_special_tokens(reserved: int = LLAMA3_RESERVED) -> list[str]:
    head = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
            "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    return head + [f"<|reserved_special_token_{i}|>" for i in range(3, 3 + reserved)]


QWEN3_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                        "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                        "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN3_NORMAL_ADDED = ["<tool_call>", "</tool_call>", "<think>", "</think>"]


@lru_cache(maxsize=1)
def training_text() -> tuple[str, ...]:
    """Real fixture text: SMILES, protein sequences and English sentences."""
    import gemmi

    texts: list[str] = []
    with open(DATA / "chembl/chembl_30_chemreps_100.txt") as handle:
        texts += [row["canonical_smiles"] for row in csv.DictReader(handle, delimiter="\t")]
    with open(DATA / "chembl/EGFR_compounds_teachopencadd.csv") as handle:
        texts += [row["smiles"] for row in csv.DictReader(handle)]
    for path in sorted((DATA / "pdb/mmcif").glob("*.cif")):
        block = gemmi.cif.read(str(path)).sole_block()
        sequences = block.find_values("_entity_poly.pdbx_seq_one_letter_code_can")
        texts += [gemmi.cif.as_string(s).replace("\n", "") for s in sequences]
    texts += [line for line in (DATA / "PROVENANCE.md").read_text().splitlines() if line.strip()]
    return tuple(texts)


def _bpe(split_pattern: str) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(training_text(), trainer)
    return tokenizer


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2))


def _added_tokens_decoder(tokenizer: Tokenizer) -> dict[str, dict]:
    return {str(i): {"content": t.content, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": t.special}
            for i, t in sorted(tokenizer.get_added_tokens_decoder().items())}


def make_base_tokenizer(style: Literal["llama3", "qwen3"], out_dir: str | Path, *, reserved: int = LLAMA3_RESERVED
                        ) -> Path:
    """Write a small base tokenizer directory in the given style; returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if style == "llama3":
        tokenizer = _bpe(LLAMA3_SPLIT)
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                      for t in llama3_special_tokens(reserved)])
        bos = "<|begin_of_text|>"
        tokenizer.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                          special_tokens=[(bos, tokenizer.token_to_id(bos))]),
        ])
        tokenizer.save(str(out / "tokenizer.json"))
        _write_json(out / "tokenizer_config.json", {
            "added_tokens_decoder": _added_tokens_decoder(tokenizer),
            "bos_token": bos, "clean_up_tokenization_spaces": True, "eos_token": "<|end_of_text|>",
            "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 131072,
            "tokenizer_class": "PreTrainedTokenizerFast",
        })
        _write_json(out / "special_tokens_map.json", {"bos_token": bos, "eos_token": "<|end_of_text|>"})
    elif style == "qwen3":
        tokenizer = _bpe(QWEN_SPLIT)
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN3_SPECIAL_TOKENS])
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN3_NORMAL_ADDED])
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
        tokenizer.save(str(out / "tokenizer.json"))
        tokenizer.model.save(str(out))  # vocab.json and merges.txt, as Qwen ships them
        _write_json(out / "tokenizer_config.json", {
            "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": _added_tokens_decoder(tokenizer),
            "bos_token": None, "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>",
            "errors": "replace", "model_max_length": 131072, "pad_token": "<|endoftext|>",
            "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
        })
        _write_json(out / "special_tokens_map.json", {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"})
    else:
        raise ValueError(f"unknown base tokenizer style {style!r} (llama3 or qwen3)")
    return out
