"""DPO loss and metrics against TRL's DPOTrainer (trl 1.16) on identical inputs and the same model.

TRL computes its loss in ``DPOTrainer._compute_loss`` (no standalone loss function in 1.16); we feed
its own collated batch to both TRL and raco and compare the loss and the rewards/* metrics."""

from __future__ import annotations

import copy

import pytest
import torch
from engine_fixtures import VOCAB, tiny_model

from raco.losses import ObjectiveSpec, PairLogps, objective_losses, objective_metrics, response_logps

trl = pytest.importorskip("trl")


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t1"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token="t2", unk_token="t1")


def _dataset(n: int):
    from datasets import Dataset

    g = torch.Generator().manual_seed(0)

    def text(lo: int, hi: int) -> str:
        length = int(torch.randint(lo, hi, (1,), generator=g))
        return " ".join(f"t{int(i)}" for i in torch.randint(3, VOCAB, (length,), generator=g))

    rows = [
        {"prompt": text(2, 5), "chosen": " " + text(1, 6), "rejected": " " + text(1, 6)} for _ in range(n)
    ]
    return Dataset.from_list(rows)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge"])
def test_dpo_loss_and_metrics_match_trl(tmp_path, loss_type):
    model = tiny_model("llama", seed=0)
    ref_model = tiny_model("llama", seed=1)  # a different reference so rewards are non-trivial
    args = trl.DPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        beta=0.3,
        loss_type=[loss_type],
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        max_length=64,
        bf16=False,
    )
    trainer = trl.DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(ref_model),
        args=args,
        train_dataset=_dataset(4),
        processing_class=_tokenizer(),
    )
    inputs = next(iter(trainer.get_train_dataloader()))
    trl_loss = trainer._compute_loss(trainer.model, inputs, return_outputs=False)
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if k.startswith("rewards/")}

    batch = {
        "input_ids": inputs["input_ids"],
        "attention_mask": inputs["attention_mask"],
        "response_mask": inputs["completion_mask"].bool(),
    }
    n_pairs = batch["input_ids"].shape[0] // 2
    signs = torch.ones(n_pairs, 1)
    spec = ObjectiveSpec("dpo", loss="dpo" if loss_type == "sigmoid" else "hinge", beta=0.3)
    with torch.no_grad():
        logps, lengths = response_logps(model, batch)
        ref, _ = response_logps(ref_model, batch)
    pair = PairLogps.from_rows(logps, lengths, ref)
    ours = objective_losses(pair, signs, [spec], torch.tensor([float(n_pairs)]))
    torch.testing.assert_close(ours[0], trl_loss.detach().to(ours.dtype), rtol=1e-5, atol=1e-6)
    ours = objective_metrics(pair, signs, [spec])  # TRL's names after the objective's: dpo/rewards/...
    metrics = {key.removeprefix("dpo/"): value for key, value in ours.items()}
    assert set(ours) == {f"dpo/{key}" for key in metrics}
    assert set(metrics) == {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"}
    for key, value in metrics.items():
        assert value == pytest.approx(trl_metrics[key], rel=1e-5, abs=1e-6), key
