"""``model.share_prompt`` on the default path (fused for k = 2, gradients/capture.py "Shared prompt"): a
run sharing each pair's prompt logs the numbers of the same run without sharing, and stays fused."""

from __future__ import annotations

import warnings

from run_compare import assert_same_run

from raco.training.loop import train


def test_shared_prompt_run_equals_the_unshared_run_on_the_fused_path(tiny_config):
    runs = {}
    for share in (False, True):
        tree = tiny_config(**{"model.share_prompt": share, "train.max_steps": 3})
        tree["output_dir"] += f"-share-{share}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs[share] = train(tree)
        assert not [w for w in caught if "fused one-backward path does not support" in str(w.message)]
    assert_same_run(runs[False].run_dir, runs[True].run_dir, steps=3)
