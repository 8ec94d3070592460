"""model.logprob_chunk: a run whose log-probs are computed a few response tokens at a time
(losses/chunked.py, for the policy, its reference and the held-out evaluation) logs the numbers and
ends with the weights of the same run computed at once — LoRA with the adapter-disabled reference, full
fine-tuning with a frozen copy, and a cached reference table. (The chunked function itself is checked
against the model's own logits in tests/engine/test_chunked_logps.py.)"""

from __future__ import annotations

import pytest
import torch

from raco.config import ConfigError, from_dict
from raco.training.loop import train
from raco.training.metrics import read_metrics

SETUPS = {
    "lora": {"lora.enabled": True, "lora.target_modules": ["q_proj", "v_proj"], "model.reference": "adapter"},
    "full-copy": {"model.reference": "copy"},
    "full-cached": {"model.reference": "cached"},
}


def _run(tiny_config, tmp_path, name: str, chunk: int | None, setup: dict) -> tuple[list, dict]:
    tree = tiny_config(
        **{"train.max_steps": 3, "train.eval_every": 2, "model.logprob_chunk": chunk, **setup},
        output_dir=str(tmp_path / name),
    )
    result = train(tree)
    weights = {k: v.detach().clone() for k, v in result_model_state(result.run_dir).items()}
    return read_metrics(result.run_dir), weights


def result_model_state(run_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted((run_dir / "model").glob("*.safetensors"))
    assert files, f"no weights in {run_dir / 'model'}"
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(f))
    return state


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_chunked_run_equals_the_run_at_once(tiny_config, tmp_path, monkeypatch, setup):
    import raco.models.reference as reference

    monkeypatch.setattr(reference, "cache_dir", lambda: tmp_path / "cache")
    import raco.losses.chunked as chunked_module

    calls = {True: 0, False: 0}  # grad enabled: the policy's training forward; no grad: reference, eval
    original = chunked_module.chunked_response_logps

    def counted(*args, **kwargs):
        calls[torch.is_grad_enabled()] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(chunked_module, "chunked_response_logps", counted)
    at_once, w_once = _run(tiny_config, tmp_path, "once", None, SETUPS[setup])
    assert calls == {True: 0, False: 0}
    chunked, w_chunked = _run(tiny_config, tmp_path, "chunked", 3, SETUPS[setup])
    assert calls[True] >= 3 and calls[False] >= 3, calls  # every step, the reference and evaluation
    assert len(at_once) == len(chunked) > 0
    compared = 0
    for a, b in zip(at_once, chunked, strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, float) and key not in ("tokens_per_second",) and not key.startswith("time"):
                assert b[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
                compared += 1
    assert compared > 20
    assert w_once.keys() == w_chunked.keys()
    # AdamW turns a rounding-level gradient difference on an entry whose gradient is ~0 into a visible
    # share of one step (lr 3e-3 here): weights agree to a small fraction of one step, 1e-4 = 3 % of lr
    for key in w_once:
        torch.testing.assert_close(w_chunked[key], w_once[key], rtol=1e-4, atol=1e-4)


def test_logprob_chunk_must_be_positive(tiny_config):
    with pytest.raises(ConfigError, match=r"model\.logprob_chunk"):
        from_dict(tiny_config(**{"model.logprob_chunk": 0}))


@pytest.mark.parametrize("setup", ["lora", "full-copy"])
def test_raco_eval_of_a_chunked_run_computes_as_training_did(tiny_config, tmp_path, monkeypatch, setup):
    """raco eval of a run with model.logprob_chunk: its preference metrics are the run's final ones, and
    the tuned model's and its reference's log-probs go through the chunked function."""
    import raco.losses.chunked as chunked_module
    from raco.eval.config import load_eval_config
    from raco.eval.runner import evaluate_target

    tree = tiny_config(
        **{"train.max_steps": 2, "model.logprob_chunk": 3, **SETUPS[setup]}, output_dir=str(tmp_path / "run")
    )
    result = train(tree)
    calls = []
    original = chunked_module.chunked_response_logps
    monkeypatch.setattr(
        chunked_module, "chunked_response_logps", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    import raco.losses.logps as logps_module

    at_once = []  # the unchunked path's logits: none may be formed
    kept = logps_module.kept_logits
    monkeypatch.setattr(logps_module, "kept_logits", lambda *a, **k: at_once.append(1) or kept(*a, **k))
    cfg = load_eval_config(None, {"base": "false"})
    out = evaluate_target(result.run_dir, cfg, tmp_path / "eval", progress=False)
    assert len(calls) >= 2 and at_once == []  # policy and reference, per held-out batch, all chunked
    for name in ("friendly", "concise"):
        key = f"{name}/rewards/accuracies"
        assert out["preference"]["tuned"][key] == pytest.approx(result.final_metrics[f"eval/{key}"], rel=1e-5)
        key = f"{name}/loss"
        assert out["preference"]["tuned"][key] == pytest.approx(result.final_metrics[f"eval/{key}"], rel=1e-5)
