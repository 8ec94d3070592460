"""Batched, seeded generation of one response per held-out prompt.

Prompts are encoded the way a chat model expects them: through the tokenizer's chat template (as a user
message, with the generation prompt) when it has one, as plain text with its special tokens otherwise
(``chat_template`` forces either). Batches are left-padded and built from prompts of similar length; the
responses come back in the prompts' order, without the prompt, cut at the first end token, decoded
without special tokens.

Sampling is made independent of batching: instead of ``torch.multinomial`` on the global generator,
each prompt has its own generator seeded from ``(seed, prompt index)``, and a token is drawn by the
Gumbel-max trick — ``argmax(warped logits + Gumbel noise)`` is an exact sample of the temperature /
top-p distribution — as a logits processor before greedy selection. So the same seed gives the same
responses at any batch size, up to the float rounding of batched matrix products (a near-tie between
two tokens can then flip); the global torch RNG is neither used nor changed.

Backends: ``transformers`` (default, any device) and ``vllm`` where it is installed (GPU users; not
tested here: vLLM does not install on these CPU machines).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from raco.config_tree import ConfigError

Prompt = str | list[dict[str, str]]  # plain text, or chat messages
BACKENDS = ("transformers", "vllm")


class GenerationError(ConfigError):
    """Generation settings or inputs that cannot work; the message is one paragraph."""


@dataclass(frozen=True)
class GenerationConfig:
    """How responses are generated: greedy unless ``do_sample``; one response per prompt."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0  # with do_sample: logits are divided by it
    top_p: float = 1.0  # with do_sample: nucleus sampling keeps this much probability mass
    seed: int = 0  # with do_sample: prompt i's draws depend only on (seed, i)
    batch_size: int = 8
    chat_template: bool | None = None  # None: use the tokenizer's chat template when it has one
    backend: Literal["transformers", "vllm"] = "transformers"

    def __post_init__(self) -> None:
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "batch_size": self.batch_size >= 1,
            "temperature": self.temperature > 0,
            "top_p": 0 < self.top_p <= 1,
            "backend": self.backend in BACKENDS,
        }
        rules = {
            "max_new_tokens": "at least 1",
            "batch_size": "at least 1",
            "temperature": "> 0 (for greedy decoding set do_sample: false)",
            "top_p": "in (0, 1]",
            "backend": " or ".join(BACKENDS),
        }
        for key, ok in checks.items():
            if not ok:
                raise GenerationError(f"generation.{key}: must be {rules[key]}, got {getattr(self, key)!r}")


class GenerationBackend(Protocol):
    """Something that turns prompts into one response each."""

    def generate(
        self, prompts: Sequence[Prompt], config: GenerationConfig, *, progress: bool = True
    ) -> list[str]:
        """One response text per prompt, in order."""
        ...


def row_seed(seed: int, index: int) -> int:
    """The seed of prompt ``index``'s own generator (a hash, so nearby seeds do not share draws)."""
    digest = hashlib.sha256(f"raco-generate:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt], chat_template: bool | None) -> list[list[int]]:
    """Token ids of each prompt: chat template (user turn + generation prompt) or plain text."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    use_template = has_template if chat_template is None else chat_template
    if use_template and not has_template:
        raise GenerationError("generation.chat_template: true, but the tokenizer has no chat template")
    encoded = []
    for prompt in prompts:
        if use_template or isinstance(prompt, list):
            if not has_template:
                raise GenerationError(
                    "a prompt is a list of chat messages but the tokenizer has no chat template"
                )
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "input_ids") else ids
        else:
            ids = tokenizer(prompt)["input_ids"]
        encoded.append([int(i) for i in ids])
    return encoded


def end_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Token ids that end a response: the tokenizer's eos and the model's generation eos ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update([extra] if isinstance(extra, int) else list(extra or []))
    return sorted(ids)


def decode_response(tokenizer: Any, ids: Sequence[int], ends: Sequence[int]) -> str:
    """The text of generated ``ids`` up to (not including) the first end token, special tokens skipped."""
    ids = list(ids)
    cut = next((i for i, t in enumerate(ids) if t in ends), len(ids))
    return tokenizer.decode(ids[:cut], skip_special_tokens=True)


class TransformersBackend:
    """Generation with ``model.generate`` (greedy search plus the processors that make sampling
    batch-independent)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer

    def generate(
        self, prompts: Sequence[Prompt], config: GenerationConfig, *, progress: bool = True
    ) -> list[str]:
        """One response per prompt, in the prompts' order."""
        encoded = encode_prompts(self.tokenizer, prompts, config.chat_template)
        answers = self.generate_batches(
            encoded, batch_plan(encoded, config.batch_size), config, progress=progress
        )
        return [answers[i] for i in range(len(encoded))]

    def generate_batches(
        self,
        encoded: Sequence[list[int]],
        batches: Sequence[Sequence[int]],
        config: GenerationConfig,
        *,
        progress: bool = True,
        synced: bool = False,
    ) -> dict[int, str]:
        """The responses to the prompts of ``batches`` (lists of indices into ``encoded``, e.g. some of
        :func:`batch_plan`'s), by index. ``synced``: every process keeps running forward passes until
        all have finished (a sharded model's forward is a collective; transformers' ``synced_gpus``)."""
        from tqdm.auto import tqdm

        responses: dict[int, str] = {}
        with tqdm(total=sum(map(len, batches)), desc="generate", unit="prompt", disable=not progress) as bar:
            for rows in batches:
                texts = self._batch([encoded[i] for i in rows], list(rows), config, synced)
                responses.update(zip(rows, texts, strict=True))
                bar.update(len(rows))
        return responses

    def _batch(
        self, encoded: list[list[int]], rows: list[int], config: GenerationConfig, synced: bool = False
    ) -> list[str]:
        import torch
        from transformers import GenerationConfig as HFGenerationConfig

        ends = end_ids(self.tokenizer, self.model)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (ends or [0])[0]
        width = max(len(ids) for ids in encoded)
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=device)
        attention = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device
        )
        settings = HFGenerationConfig(
            max_new_tokens=config.max_new_tokens,
            do_sample=False,  # sampling is done by the Gumbel processor, per prompt
            num_beams=1,
            pad_token_id=pad,
            eos_token_id=ends or None,
            temperature=None,
            top_p=None,
            top_k=None,
        )
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    generation_config=settings,
                    logits_processor=sampling_processors(config, rows),
                    synced_gpus=True if synced else None,  # None: transformers decides, as before
                )
        finally:
            self.model.train(was_training)
        return [decode_response(self.tokenizer, row[width:].tolist(), ends) for row in out]


def batch_plan(encoded: Sequence[list[int]], batch_size: int) -> list[list[int]]:
    """Prompt indices in batches of ``batch_size``, longest prompts first (similar lengths together)."""
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def sampling_processors(config: GenerationConfig, rows: Sequence[int]) -> Any:
    """Temperature, top-p and per-prompt Gumbel noise for a batch of prompts ``rows``; empty for greedy."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    processors = LogitsProcessorList()
    if not config.do_sample:
        return processors
    if config.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(config.temperature))
    if config.top_p < 1.0:
        processors.append(TopPLogitsWarper(config.top_p))
    processors.append(GumbelNoise([row_seed(config.seed, row) for row in rows]))
    return processors


class GumbelNoise:
    """Adds independent Gumbel(0, 1) noise to each row's scores from that row's own generator, so that
    greedy selection draws a sample of ``softmax(scores)`` (Gumbel-max trick)."""

    def __init__(self, seeds: Sequence[int]) -> None:
        import torch

        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        vocab = scores.shape[-1]
        # -log(E) with E ~ Exp(1) is Gumbel(0, 1); one draw of the whole vocabulary per row and step
        noise = torch.stack([-torch.empty(vocab).exponential_(generator=g).log() for g in self.generators])
        return scores + noise.to(scores.device, scores.dtype)


class VllmBackend:
    """Generation with vLLM (GPU users; untested here). ``model`` is the folder or id vLLM loads;
    prompts are encoded by ``tokenizer`` exactly as for transformers; per-prompt seeds as above."""

    def __init__(self, model: str, tokenizer: Any, **engine_options: Any) -> None:
        from vllm import LLM

        self.tokenizer = tokenizer
        self.llm = LLM(
            model=model, tokenizer=getattr(tokenizer, "name_or_path", None) or model, **engine_options
        )

    def generate(
        self, prompts: Sequence[Prompt], config: GenerationConfig, *, progress: bool = True
    ) -> list[str]:
        """One response per prompt, in order."""
        from vllm import SamplingParams

        encoded = encode_prompts(self.tokenizer, prompts, config.chat_template)
        params = [
            SamplingParams(
                max_tokens=config.max_new_tokens,
                temperature=config.temperature if config.do_sample else 0.0,
                top_p=config.top_p if config.do_sample else 1.0,
                seed=row_seed(config.seed, i),
                skip_special_tokens=True,
            )
            for i in range(len(encoded))
        ]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded], params, use_tqdm=progress)
        return [out.outputs[0].text for out in outputs]


def make_backend(name: str, *, model: Any, tokenizer: Any) -> GenerationBackend:
    """The backend ``name`` for ``model`` (a loaded model; for ``vllm``, its folder or Hub id)."""
    if name == "transformers":
        return TransformersBackend(model, tokenizer)
    if name == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise GenerationError(
                "generation.backend: vllm is not installed (`pip install vllm`, GPU machines)"
            )
        if not isinstance(model, str):
            raise GenerationError(
                "generation.backend: vllm needs the model's folder or Hub id, not a loaded model"
            )
        return VllmBackend(model, tokenizer)
    raise GenerationError(f"generation.backend: {name!r} is not one of {', '.join(BACKENDS)}")


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    config: GenerationConfig | None = None,
    *,
    progress: bool = True,
) -> list[str]:
    """One response per prompt from a loaded transformers ``model`` (see the module docstring)."""
    return TransformersBackend(model, tokenizer).generate(
        prompts, config or GenerationConfig(), progress=progress
    )
