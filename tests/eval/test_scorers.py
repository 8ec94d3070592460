"""Scorer specs, the registry, checked results, objectives, and the text scorers (length, python, rouge)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from raco.eval.scorers import (
    SCORERS,
    BadScore,
    ObjectiveScorer,
    ScorerError,
    ScorerSpec,
    check_spec,
    check_value,
    make_scorer,
)

PROMPTS = ["Say hi.", "Name a fruit.", "Count to three."]
RESPONSES = ["Hello there, friend!", "apple", "one  two\nthree"]


# ----------------------------------------------------------------------------- specs


def test_string_and_mapping_specs_are_the_same_spec():
    text = ScorerSpec.parse("rouge:type=rouge1, measure=recall")
    mapping = ScorerSpec.parse({"name": "rouge", "measure": "recall", "type": "rouge1"})
    assert text == mapping == ScorerSpec("rouge", (("measure", "recall"), ("type", "rouge1")))
    assert str(text) == "rouge:measure=recall,type=rouge1"
    assert ScorerSpec.parse(text) is text


def test_option_values_may_hold_colons():
    spec = ScorerSpec.parse("python:function=path/to/file.py:score")
    assert spec.name == "python" and spec.get("function") == "path/to/file.py:score"


def test_check_spec_fills_defaults_and_coerces_types():
    spec = check_spec("classifier:model=m,label=1,trust_remote_code=yes,batch_size=4")
    options = dict(spec.options)
    assert options["trust_remote_code"] is True and options["batch_size"] == 4
    assert options["label"] == "1" and options["output"] == "logit" and options["max_length"] == 512
    assert check_spec({"name": "classifier", "model": "m", "label": 1}).get("label") == "1"  # YAML int


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "lenght",
            "unknown scorer 'lenght'; scorers are length, relevance, classifier, python, rouge; "
            "did you mean `length`?",
        ),
        (
            "length:units=words",
            "scorer 'length' has no option 'units' (it takes unit, tokenizer); did you mean `unit`?",
        ),
        (
            "length:unit=word",
            "scorer 'length' option 'unit': 'word' is not one of words, characters, tokens; "
            "did you mean `words`?",
        ),
        ("classifier:label=1", "scorer 'classifier' needs option 'model'"),
        (
            "classifier:model=m,batch_size=two",
            "scorer 'classifier' option 'batch_size': expected int, got 'two'",
        ),
        (
            "classifier:model=m,trust_remote_code=maybe",
            "option 'trust_remote_code': expected bool, got 'maybe'",
        ),
        ("length:unit", "option 'unit' is not `key=value`"),
        ({"unit": "words"}, "needs a `name`"),
        ("", "expected a name"),
    ],
)
def test_bad_specs_name_what_is_wrong(spec, message):
    with pytest.raises(ScorerError) as err:
        check_spec(spec)
    assert message in str(err.value)


def test_every_registered_scorer_names_an_importable_class_with_a_docstring():
    import importlib

    from raco.eval.scorers import Scorer

    for name, info in SCORERS.items():
        module, _, cls = info.target.partition(":")
        target = getattr(importlib.import_module(module), cls)
        assert issubclass(target, Scorer) and target.__doc__, name
        assert info.summary and all(o.help for o in info.options.values()), name


def test_specs_and_generation_settings_import_neither_torch_nor_transformers():
    code = (
        "import sys, raco.eval, raco.eval.scorers, raco.eval.generate; raco.eval.check_spec('length'); "
        "raco.eval.GenerationConfig(); print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# ----------------------------------------------------------------------------- checked results


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3.0),
        (True, 1.0),
        (2.5, 2.5),
        ("1.0", None),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
    ],
)
def test_check_value_accepts_finite_real_numbers_only(value, expected):
    number, reason = check_value(value)
    if expected is None:
        assert math.isnan(number) and reason
    else:
        assert number == expected and reason is None


def test_numpy_and_tensor_scalars_are_numbers():
    import numpy as np
    import torch

    assert check_value(np.float32(0.5)) == (0.5, None)
    assert check_value(torch.tensor(2.0)) == (2.0, None)
    assert math.isnan(check_value(torch.tensor([1.0, 2.0]))[0])


def test_bad_rows_are_nan_and_listed_and_the_batch_goes_on(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def f(prompts, responses):\n    return [1, 'high', float('nan'), 2.5]\n")
    scores = make_scorer(f"python:function={path}:f").run(["p"] * 4, ["a", "b", "c", "d"])
    assert scores.values[0] == 1.0 and scores.values[3] == 2.5
    assert math.isnan(scores.values[1]) and math.isnan(scores.values[2])
    assert scores.bad == (BadScore(1, "returned 'high' (str), not a number"), BadScore(2, "returned NaN"))
    assert scores.n_bad == 2 and scores.valid() == [1.0, 2.5] and scores.mean() == 1.75
    assert scores.report() == (
        f"scorer python:function={path}:f: 2 of 4 rows not scored "
        "(row 1: returned 'high' (str), not a number; row 2: returned NaN)"
    )
    assert scores.report(limit=1).endswith("; and 1 more)")


def test_a_wrong_number_of_scores_is_an_error(tmp_path):
    path = tmp_path / "short.py"
    path.write_text("def f(prompts, responses):\n    return [1.0]\n")
    with pytest.raises(ScorerError, match="returned 1 scores for 2 rows"):
        make_scorer(f"python:function={path}:f").run(["p", "q"], ["a", "b"])


def test_mismatched_batches_are_errors():
    scorer = make_scorer("length")
    with pytest.raises(ScorerError, match="2 prompts but 1 responses"):
        scorer.run(["p", "q"], ["a"])
    with pytest.raises(ScorerError, match="1 references for 2 rows"):
        scorer.run(["p", "q"], ["a", "b"], ["r"])


# ----------------------------------------------------------------------------- length


def test_length_in_words_and_characters_by_hand():
    assert make_scorer("length").run(PROMPTS, RESPONSES).values == [3.0, 1.0, 3.0]
    assert make_scorer("length:unit=characters").run(PROMPTS, RESPONSES).values == [20.0, 5.0, 14.0]


def test_length_in_tokens_of_the_given_or_the_named_tokenizer(bpe_tokenizer):
    expected = [float(len(bpe_tokenizer.encode(r, add_special_tokens=False))) for r in RESPONSES]
    scorer = make_scorer("length:unit=tokens", tokenizer=bpe_tokenizer)
    assert scorer.run(PROMPTS, RESPONSES).values == expected and scorer.name == "length:unit=tokens"
    gpt2 = make_scorer("length:unit=tokens,tokenizer=gpt2")
    assert gpt2.run(["p"], ["Hello world"]).values == [2.0]  # GPT-2 ids [15496, 995]


def test_length_in_tokens_without_a_tokenizer_is_an_error():
    with pytest.raises(ScorerError, match="counting tokens needs a tokenizer"):
        make_scorer("length:unit=tokens")
    with pytest.raises(ScorerError, match="`tokenizer` counts only with unit=tokens"):
        make_scorer("length:tokenizer=gpt2")


# ----------------------------------------------------------------------------- python


def test_python_function_from_a_file_gets_the_batch(tmp_path):
    path = tmp_path / "my_scores.py"
    path.write_text(
        "def overlap(prompts, responses, references):\n"
        "    pairs = zip(prompts, responses)\n"
        "    return [len(set(p.split()) & set(r.split())) + (references is None) for p, r in pairs]\n"
    )
    scores = make_scorer({"name": "python", "function": f"{path}:overlap"}).run(
        ["a b c", "x y"], ["b c d", "z"]
    )
    assert scores.values == [3.0, 1.0] and not scores.bad  # 2 + 1 and 0 + 1 (no references)


def test_python_function_from_a_module(tmp_path, monkeypatch):
    (tmp_path / "scoremod.py").write_text("import math\ndef neg(p, r):\n    return [-len(x) for x in r]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert make_scorer("python:function=scoremod:neg").run(["p"], ["abc"]).values == [-3.0]


@pytest.mark.parametrize(
    ("content", "target", "message"),
    [
        (None, "no_such_module_xyz:f", "cannot import 'no_such_module_xyz': ModuleNotFoundError"),
        ("def score(p, r):\n    return []\n", "FILE:scroe", "has no 'scroe'; did you mean `score`?"),
        ("score = 3\n", "FILE:score", "is a int, not a function"),
        ("import nope_not_here\n", "FILE:f", "ModuleNotFoundError: No module named 'nope_not_here'"),
        ("def f(p):\n    return []\n", "FILE:f", "must take (prompts, responses[, references])"),
        (None, "missing.py:f", "the file"),
        (None, "nocolon", "is not `module:function`"),
    ],
)
def test_python_scorer_import_errors_are_clear(tmp_path, content, target, message):
    path = tmp_path / "user.py"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ScorerError) as err:
        make_scorer("python:function=" + target.replace("FILE", str(path)))
    assert message in str(err.value)


def test_an_exception_inside_the_function_is_a_scorer_error(tmp_path):
    path = tmp_path / "boom.py"
    path.write_text("def f(p, r):\n    raise RuntimeError('model server down')\n")
    with pytest.raises(ScorerError, match="failed on a batch of 1 rows: RuntimeError: model server down"):
        make_scorer(f"python:function={path}:f").run(["p"], ["r"])


# ----------------------------------------------------------------------------- rouge


def test_rouge_against_the_reference_by_hand():
    # "the cat sat" vs "the cat sat down": LCS 3 -> precision 3/4, recall 3/3, F = 6/7
    refs = ["the cat sat", "the cat sat", None]
    responses = ["the cat sat down", "dogs bark", "anything"]
    scores = make_scorer("rouge").run(["p"] * 3, responses, refs)
    assert scores.values[:2] == pytest.approx([6 / 7, 0.0])
    assert scores.bad == (BadScore(2, "no reference answer"),)
    recall = make_scorer("rouge:type=rouge1,measure=recall").run(
        ["p"], ["the cats sat down"], ["the cat sat"]
    )
    assert recall.values == [1.0]  # the stemmer maps cats -> cat


def test_rouge_needs_references():
    with pytest.raises(ScorerError, match="compares with a reference answer, and none was given"):
        make_scorer("rouge").run(["p"], ["r"])


def test_a_missing_optional_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rouge_score", None)
    monkeypatch.setitem(sys.modules, "rouge_score.rouge_scorer", None)
    with pytest.raises(ScorerError, match=r"needs rouge-score: run `pip install rouge-score`"):
        make_scorer("rouge")


# ----------------------------------------------------------------------------- objectives


def test_objective_scorer_directions():
    shorter = ObjectiveScorer("length:unit=words", "lower")
    assert shorter.scorer == check_spec("length")  # stored checked
    assert shorter.improvement(base=10, tuned=7) == 3 and shorter.compare(7, 10) == 1
    assert shorter.compare(10, 7) == -1 and shorter.compare(7, 7.5, margin=1) == 0
    relevant = ObjectiveScorer.parse({"scorer": {"name": "relevance"}})
    assert relevant.direction == "higher" and relevant.improvement(0.2, 0.5) == pytest.approx(0.3)
    assert hash(shorter) != hash(relevant)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("length", "hihger"), "direction: 'hihger' is not `higher` or `lower`; did you mean `higher`?"),
        (("lenght", "lower"), "did you mean `length`?"),
    ],
)
def test_objective_scorer_checks_its_parts(args, message):
    with pytest.raises(ScorerError) as err:
        ObjectiveScorer(*args)
    assert message in str(err.value)


def test_objective_scorer_parse_rejects_unknown_keys():
    with pytest.raises(ScorerError, match="unknown key 'better'"):
        ObjectiveScorer.parse({"scorer": "length", "better": "lower"})
    with pytest.raises(ScorerError, match="needs `scorer`"):
        ObjectiveScorer.parse({"direction": "lower"})
