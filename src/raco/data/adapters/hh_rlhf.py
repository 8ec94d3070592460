"""Anthropic/hh-rlhf (``helpful-base``, ``harmless-base``, ...): chosen/rejected full transcripts.

Each transcript is ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``; it is split after its last
``"\\n\\nAssistant:"``: the part up to there is the prompt, the rest (with its leading space) the
response, so prompt + response is the original text. Rows whose chosen and rejected prompts differ,
whose final reply is empty, or whose chosen and rejected replies are identical are skipped, counted and
logged (properties of a few real rows). One objective: the single name in
``spec.objectives``, else ``helpful``/``harmless`` from ``data_dir``, else ``"preference"``; used
per objective in separate-datasets mode. Option ``messages=True`` gives chat messages instead
(Human -> user, Assistant -> assistant) so the model's chat template is used.
"""

from __future__ import annotations

import re
from typing import Any

from raco.data.collect import RowCollector, check_options, flag_option
from raco.data.errors import DataError
from raco.data.schema import Message, PreferenceDataset, Text
from raco.data.sources import Records, get_field
from raco.data.spec import DataSpec

ASSISTANT = "\n\nAssistant:"
TURN = re.compile(r"\n\n(Human|Assistant): ?")
OPTIONS = {"messages": (False, flag_option)}


def load_hh_rlhf(records: Records, spec: DataSpec) -> PreferenceDataset:
    """Rows of hh-rlhf with one objective, sign +1 (chosen is response 1)."""
    options = check_options(records, spec.options, OPTIONS)
    records.require("chosen", "rejected")
    collector = RowCollector(records, (_objective_name(spec),), spec.on_invalid, bad_pairs="skip")
    for number, row in records.numbered():
        with collector.at(number):
            prompt, chosen = split_transcript(get_field(row, "chosen"), "chosen")
            other_prompt, rejected = split_transcript(get_field(row, "rejected"), "rejected")
            if prompt != other_prompt:
                collector.skip("chosen and rejected prompts differ")
                continue
            parts: tuple[Text, Text, Text] = (prompt, chosen, rejected)
            if options["messages"]:
                parts = (
                    transcript_messages(prompt),
                    [{"role": "assistant", "content": chosen.strip()}],
                    [{"role": "assistant", "content": rejected.strip()}],
                )
            collector.add(*parts, (1,), fields=("chosen", "chosen", "rejected"))
    return collector.dataset()


def _objective_name(spec: DataSpec) -> str:
    if spec.objectives is not None and len(spec.objectives) == 1:
        return spec.objectives[0]
    for name in ("helpful", "harmless"):
        if spec.data_dir and spec.data_dir.startswith(name):
            return name
    return "preference"


def split_transcript(text: Any, field: str) -> tuple[str, str]:
    """(prompt ending in ``"\\n\\nAssistant:"``, final assistant reply)."""
    if not isinstance(text, str):
        raise DataError(f"must be a transcript string, got {type(text).__name__}", field=field)
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise DataError(f"transcript has no {ASSISTANT!r} turn", field=field)
    end = cut + len(ASSISTANT)
    return text[:end], text[end:]


def transcript_messages(prompt: str) -> list[Message]:
    """Chat messages of a transcript prompt (its trailing empty assistant turn dropped)."""
    parts = TURN.split(prompt)
    messages = []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        if content.strip():
            messages.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    return messages
