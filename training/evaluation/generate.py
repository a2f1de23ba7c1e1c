"""Generation and scoring passes of a causal LM, driven the way LOGOS's inference scripts drive one.

Prompts are encoded exactly as ``tokenizer(prompt)`` (``add_special_tokens=True``) encodes them, padded on
the left, batched; sampling uses a fixed seed and records its settings. Each sequence is decoded with
``skip_special_tokens=False`` as prompt + continuation up to and including the first stop token (the
tokenizer's eos or the task's end tag); padding is never decoded.

Engines: ``transformers`` (``model.generate`` with its KV cache, on CPU or GPU) and ``vllm`` (used when
it is installed and a GPU is present; same results format). Prompts are sorted by length before batching
so that a batch pads little; results come back in the caller's order.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SamplingSettings:
    samples: int = 1  # sequences per prompt
    temperature: float = 1.2  # LOGOS's scripts; 0 means greedy decoding
    top_p: float = 0.9  # LOGOS: 0.85-0.95
    repetition_penalty: float = 1.05
    max_new_tokens: int = 256
    batch_size: int = 8  # prompts per generate call (each yields `samples` sequences)
    seed: int = 1234

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Generation:
    sequences: list[list[str]]  # per prompt: `samples` decoded sequences (prompt + continuation)
    new_tokens: int  # generated tokens, stop tokens included, padding not
    seconds: float


class Generator:
    """What both engines share: the HF tokenizer and the prompt/answer encoding rules."""

    engine = "none"

    def __init__(self, tokenizer: Any, max_positions: int | None, eod_id: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_positions = max_positions
        self.eos_id = tokenizer.eos_token_id
        # The document end training appended (logos tokenizer metadata); the HF eos when unknown.
        self.eod_id = eod_id if eod_id is not None else self.eos_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    def encode_prompt(self, prompt: str) -> list[int]:
        """``tokenizer(prompt)["input_ids"]`` (add_special_tokens=True), minus a trailing eos.

        A prompt must not end "document over" (see docs/logos-interop.md). Saved native tokenizers written
        before issue 9's change append ``<eos>`` in their post-processor; drop it only when the tokenizer
        added it, i.e. when the text itself does not end in the eos token.
        """
        ids = list(self.tokenizer(prompt)["input_ids"])
        eos = self.tokenizer.eos_token
        if ids and ids[-1] == self.eos_id and not (eos and prompt.endswith(eos)):
            ids.pop()
        return ids

    def token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"the model's tokenizer has no token {token!r}")
        return token_id

    def stop_ids(self, stop_token: str | None) -> list[int]:
        ids = [i for i in (self.eos_id, self.eod_id) if i is not None]
        if stop_token is not None:
            ids.append(self.token_id(stop_token))
        return list(dict.fromkeys(ids))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def finish(self, prompt_ids: list[int], generated: Sequence[int], stops: list[int]) -> tuple[str, int]:
        """Decoded prompt + continuation up to the first stop token (inclusive), and its new-token count."""
        kept = []
        for token in generated:
            kept.append(token)
            if token in stops:
                break
        return self.decode(prompt_ids + kept), len(kept)

    def document_ids(self, text: str) -> list[int]:
        """A whole record as training saw it: prefix + text + document end, cut to the model's context."""
        ids = [*self.encode_prompt(text), self.eod_id]
        return ids[: self.max_positions] if self.max_positions else ids

    def generate(self, prompts: Sequence[str], stop_token: str | None, settings: SamplingSettings) -> Generation:
        raise NotImplementedError

    def nll(self, texts: Sequence[str], batch_size: int) -> list[tuple[float, int]]:
        """Summed negative log-likelihood (nats) and predicted-token count of each document."""
        raise NotImplementedError


def logos_eod_id(model_dir: str | Path) -> int | None:
    """The document-end id a logos tokenizer declares (None for a tokenizer without logos metadata)."""
    from grammar.errors import GrammarError
    from grammar.tokenizer import load_tokenizer

    try:
        return load_tokenizer(model_dir).eod_id
    except (GrammarError, OSError, ValueError, KeyError):
        return None


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


class TransformersGenerator(Generator):
    engine = "transformers"

    def __init__(self, model_dir: str | Path, device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(self.device).eval()
        positions = getattr(self.model.config, "max_position_embeddings", None)
        super().__init__(tokenizer, positions, logos_eod_id(model_dir))

    def generate(self, prompts: Sequence[str], stop_token: str | None, settings: SamplingSettings) -> Generation:
        import torch
        from transformers import set_seed

        set_seed(settings.seed)
        encoded = [self.encode_prompt(p) for p in prompts]
        stops = self.stop_ids(stop_token)
        sampling: dict[str, Any] = {"do_sample": False}
        if settings.temperature > 0:
            sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
        results: list[list[str]] = [[] for _ in prompts]
        new_tokens, started = 0, time.perf_counter()
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        for batch in _batches(order, settings.batch_size):
            width = max(len(encoded[i]) for i in batch)
            ids = [[self.pad_id] * (width - len(encoded[i])) + encoded[i] for i in batch]
            mask = [[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch]
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=torch.tensor(ids, device=self.device),
                    attention_mask=torch.tensor(mask, device=self.device),
                    max_new_tokens=settings.max_new_tokens, num_return_sequences=settings.samples,
                    repetition_penalty=settings.repetition_penalty, eos_token_id=stops, pad_token_id=self.pad_id,
                    use_cache=True, **sampling,
                )
            for row, generated in enumerate(output[:, width:].tolist()):
                index = batch[row // settings.samples]
                text, count = self.finish(encoded[index], generated, stops)
                results[index].append(text)
                new_tokens += count
        return Generation(results, new_tokens, time.perf_counter() - started)

    def nll(self, texts: Sequence[str], batch_size: int) -> list[tuple[float, int]]:
        import torch

        documents = [self.document_ids(t) for t in texts]
        out: list[tuple[float, int]] = [(0.0, 0)] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(documents[i]))
        for batch in _batches(order, batch_size):
            width = max(len(documents[i]) for i in batch)
            ids = torch.tensor([documents[i] + [self.pad_id] * (width - len(documents[i])) for i in batch],
                               device=self.device)
            mask = torch.tensor([[1] * len(documents[i]) + [0] * (width - len(documents[i])) for i in batch],
                                device=self.device)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none") * mask[:, 1:]
            for row, index in enumerate(batch):
                out[index] = (float(losses[row].sum()), int(mask[row, 1:].sum()))
        return out


class VllmGenerator(Generator):
    """vLLM on a GPU: same prompts (token ids), same stop rule, same decoded sequences."""

    engine = "vllm"

    def __init__(self, model_dir: str | Path, seed: int) -> None:
        from vllm import LLM

        self.llm = LLM(model=str(model_dir), seed=seed)
        config = self.llm.llm_engine.model_config
        super().__init__(self.llm.get_tokenizer(), getattr(config, "max_model_len", None), logos_eod_id(model_dir))

    def generate(self, prompts: Sequence[str], stop_token: str | None, settings: SamplingSettings) -> Generation:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = [self.encode_prompt(p) for p in prompts]
        stops = self.stop_ids(stop_token)
        params = SamplingParams(
            n=settings.samples, temperature=settings.temperature, top_p=settings.top_p if settings.temperature else 1.0,
            repetition_penalty=settings.repetition_penalty, max_tokens=settings.max_new_tokens, seed=settings.seed,
            stop_token_ids=stops, skip_special_tokens=False,
        )
        started = time.perf_counter()
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], params)
        results, new_tokens = [], 0
        for ids, output in zip(encoded, outputs, strict=True):
            texts = []
            for completion in output.outputs:
                text, count = self.finish(ids, list(completion.token_ids), stops)
                texts.append(text)
                new_tokens += count
            results.append(texts)
        return Generation(results, new_tokens, time.perf_counter() - started)

    def nll(self, texts: Sequence[str], batch_size: int) -> list[tuple[float, int]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        documents = [self.document_ids(t) for t in texts]
        params = SamplingParams(max_tokens=1, prompt_logprobs=0)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=d) for d in documents], params)
        out = []
        for document, output in zip(documents, outputs, strict=True):
            logprobs = output.prompt_logprobs[1:]  # position 0 has no prediction
            out.append((-sum(step[token].logprob for step, token in zip(logprobs, document[1:], strict=True)),
                        len(document) - 1))
        return out


def vllm_usable() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def make_generator(model_dir: str | Path, engine: str = "auto", seed: int = 1234) -> Generator:
    """``auto``: vLLM when it is installed and a GPU is present, else transformers."""
    if engine == "auto":
        engine = "vllm" if vllm_usable() else "transformers"
    if engine == "vllm":
        if not vllm_usable():
            raise ValueError("engine vllm: needs the vllm package and a CUDA GPU")
        return VllmGenerator(model_dir, seed)
    if engine != "transformers":
        raise ValueError(f"unknown generation engine {engine!r} (auto, transformers, vllm)")
    return TransformersGenerator(model_dir)
