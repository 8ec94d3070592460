"""What a run shows and leaves when something is wrong: configuration, reference and model-loading
errors are one paragraph (exit 2) and leave no run directory; warnings go to RUN_DIR/warnings.log and
only those the user can act on reach the console; a stop asked for by any process (Ctrl-C, out of
memory) stops every process at the same step."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml

import raco.models.loading as loading
from raco.training import checkpoint as ckpt
from raco.training.cli_train import main
from raco.training.metrics import WARNINGS_FILE, read_metrics


def _config_file(tmp_path: Path, tree: dict) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def _no_model(monkeypatch) -> None:
    monkeypatch.setattr(loading, "load_base_model", lambda *a, **k: pytest.fail("model loaded"))


def test_reference_error_leaves_no_run_dir(tiny_config, tmp_path, monkeypatch, capsys):
    """`model.reference: none` with DPO losses: an error before the model loads and before the run
    directory exists, so the corrected config runs without `overwrite` or a `--resume` hint."""
    _no_model(monkeypatch)
    tree = tiny_config(**{"model.reference": "none"})
    assert main(["--config", _config_file(tmp_path, tree)]) == 2
    err = capsys.readouterr().err
    assert "model.reference: `none` only works when every objective's loss is reference-free" in err
    assert not Path(tree["output_dir"]).exists()


@pytest.mark.parametrize("name", ["/nonexistent/models/llama-3", "./missing-model", "models/a/b"])
def test_missing_model_folder_is_named(tiny_config, tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    tree = tiny_config(**{"model.name": name})
    assert main(["--config", _config_file(tmp_path, tree)]) == 2
    err = capsys.readouterr().err
    assert f"model.name: the folder {name} does not exist" in err
    assert "Traceback" not in err and "Repo id" not in err and err.count("\n") == 1
    assert not Path(tree["output_dir"]).exists()


def test_model_that_cannot_load_is_one_paragraph_and_leaves_everything_as_it_was(
    tiny_config, tmp_path, capsys
):
    """A folder with a tokenizer and a config but no weights: the tokenizer and the data load, the
    model does not. One paragraph, exit 2; the existing run directory (overwrite: true) is intact."""
    from transformers import LlamaConfig

    from raco.models.offline import smollm2_tokenizer

    folder = tmp_path / "no-weights"
    smollm2_tokenizer().save_pretrained(folder)
    LlamaConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(folder)
    tree = tiny_config(**{"model.name": str(folder), "overwrite": True})
    run_dir = Path(tree["output_dir"])
    run_dir.mkdir()
    (run_dir / "precious.txt").write_text("keep")
    assert main(["--config", _config_file(tmp_path, tree)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"raco train: error: model.name: cannot load the model of '{folder}'")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert [p.name for p in run_dir.iterdir()] == ["precious.txt"]


def test_run_failing_before_its_first_step_leaves_no_run_dir(tiny_config, tmp_path, monkeypatch, capsys):
    """`method.path: fused` on a model the fused path cannot handle fails in the first micro-batch:
    one paragraph, exit 2, and no run directory whose `--resume` would fail the same way."""
    from raco.gradients import GradientEngine
    from raco.gradients.capture import FusedPathUnsupported

    def unsupported(self, *args, **kwargs):
        raise FusedPathUnsupported("path='fused' does not support this model: (simulated)")

    monkeypatch.setattr(GradientEngine, "accumulate", unsupported)
    tree = tiny_config(**{"method.path": "fused"})
    assert main(["--config", _config_file(tmp_path, tree)]) == 2
    assert "path='fused' does not support this model" in capsys.readouterr().err
    assert not Path(tree["output_dir"]).exists()


def test_warnings_go_to_the_run_log_and_only_actionable_ones_to_the_console(
    tiny_config, tmp_path, monkeypatch, capsys
):
    """A dual certified only loosely (RuntimeWarning, every step) and a transformers deprecation
    (FutureWarning) are written once each to warnings.log, not to stderr; the fused-path fallback
    notice, which asks the user to act, is shown."""
    import raco.aggregators._simplex as simplex
    import raco.training.loop as loop

    monkeypatch.setattr(simplex, "_certified", lambda *a, **k: False)
    evaluate = loop.run_evaluation

    def noisy_evaluation(s, *args, **kwargs):
        warnings.warn("`past_key_values` as a tuple is deprecated (simulated)", FutureWarning, stacklevel=1)
        warnings.warn(
            "the fused one-backward path does not support this model (simulated); using the plain path",
            RuntimeWarning,
            stacklevel=1,
        )
        return evaluate(s, *args, **kwargs)

    monkeypatch.setattr(loop, "run_evaluation", noisy_evaluation)
    tree = tiny_config(**{"train.max_steps": 2, "train.eval_every": 1})
    with warnings.catch_warnings():  # the console as outside pytest (pytest records warnings)
        warnings.simplefilter("default")
        warnings.showwarning = lambda m, c, f, n, file=None, line=None: print(
            warnings.formatwarning(m, c, f, n, line), end="", file=__import__("sys").stderr
        )
        assert main(["--config", _config_file(tmp_path, tree)]) == 0
    err = capsys.readouterr().err
    assert "dual certified" not in err and "past_key_values" not in err
    assert err.count("the fused one-backward path does not support this model") == 1
    assert "other warning(s)" in err and WARNINGS_FILE in err
    logged = (Path(tree["output_dir"]) / WARNINGS_FILE).read_text()
    first = [line for line in logged.splitlines() if line.startswith("[step") or line.startswith("[setup")]
    duals = [line for line in first if "CAGrad/MGDA dual certified only" in line]
    assert duals and all(line.startswith("[step 1] RuntimeWarning") for line in duals)  # once per site
    assert sum("past_key_values" in line for line in first) == 1
    assert any(
        line.startswith("[") and "times in all] RuntimeWarning: CAGrad/MGDA" in line
        for line in logged.splitlines()
    )
    assert "FutureWarning" in logged


def test_a_stop_asked_by_another_process_stops_this_one_at_the_same_step(tiny_config, monkeypatch):
    """The step's all-reduce carries the Ctrl-C and out-of-memory flags: here another process (simulated
    by adding to the all-reduced flags) asks to stop in step 2, then runs out of memory in step 2 of
    the resumed run; this process checkpoints at the same step and stops."""
    import raco.training.loop as loop

    reduce = loop.all_reduce_sum
    calls = {"n": 0, "slot": 0}

    def other_process(tensors):
        reduce(tensors)
        calls["n"] += 1
        if calls["n"] == 2:
            tensors[0][2 + calls["slot"]] += 1.0  # [loss × 2, tokens, stop, out of memory, rewards]

    monkeypatch.setattr(loop, "all_reduce_sum", other_process)
    tree = tiny_config(**{"train.max_steps": 4, "train.save_every": 0})
    calls["slot"] = 1
    with pytest.raises(KeyboardInterrupt, match="interrupted after step 2"):
        loop.train(tree)
    run_dir = Path(tree["output_dir"])
    assert ckpt.latest_checkpoint(run_dir).name == "step-00000002"

    calls.update(n=0, slot=2)
    with pytest.raises(loop.TrainingStopped, match="out of memory at step 4"):
        loop.resume(run_dir)
    assert ckpt.latest_checkpoint(run_dir).name == "step-00000003"
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3]
    state = ckpt.read_checkpoint(ckpt.latest_checkpoint(run_dir))["state"]
    assert state["step"] == 3 and state["metrics_records"] == 3
    assert torch.isfinite(torch.tensor(state["wall_seconds"]))
