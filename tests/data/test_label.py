"""``raco data label``: signs from a scorer, written beside the data's own columns, loadable again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raco.cli import main
from raco.data import DataSpec, load_preference_data

PAIRS = [  # (prompt, response_1, response_2, quality, verbosity)
    ("Summarise the post.", "short one", "a much longer summary here", 1, -1),
    ("What is two plus two?", "four it is", "four", -1, 1),
    ("Name a colour.", "red", "blue", 1, 0),
    ("Say hello.", "hello there my dear friend", "hi there", 0, -1),
    ("Count to three.", "one two three", "one, two and then three", 1, 1),
]


def words(text: str) -> int:
    return len(text.split())


def by_hand(margin: float, lower: bool) -> list[int]:
    """The sign of each pair under the `length` (words) scorer, written out."""
    signs = []
    for _, first, second, *_ in PAIRS:
        gain = words(first) - words(second)
        gain = -gain if lower else gain
        signs.append(1 if gain > margin else -1 if gain < -margin else 0)
    return signs


def pairwise_rows() -> list[dict]:
    return [
        {"prompt": p, "response_1": a, "response_2": b, "raco_s_quality": q, "raco_s_verbosity": v}
        for p, a, b, q, v in PAIRS
    ]


def trl_rows() -> list[dict]:
    return [
        {"prompt": p, "chosen": a, "rejected": b, "raco_s_quality": q, "raco_s_verbosity": v, "id": i}
        for i, (p, a, b, q, v) in enumerate(PAIRS)
    ]


def label(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["data", "label", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("layout", ["pairwise", "trl"])
@pytest.mark.parametrize(("margin", "lower"), [(0.0, False), (0.0, True), (1.0, False), (2.0, True)])
def test_length_signs_by_hand(capsys, write_jsonl, tmp_path, layout, margin, lower):
    rows = pairwise_rows() if layout == "pairwise" else trl_rows()
    data = write_jsonl(rows)
    output = tmp_path / "out.jsonl"
    flags = ["--lower"] if lower else []
    status, out, err = label(
        capsys, str(data), "--scorer", "length", "--objective", "concise", "--margin", str(margin),
        "--output", str(output), *flags,
    )  # fmt: skip
    assert status == 0, err
    expected = by_hand(margin, lower)
    written = read_jsonl(output)
    assert [row["raco_s_concise"] for row in written] == expected
    assert [{k: v for k, v in row.items() if k != "raco_s_concise"} for row in written] == rows
    counts = {s: expected.count(v) for s, v in (("+1", 1), ("-1", -1), ("0", 0))}
    assert f"signs: +1 {counts['+1']}  -1 {counts['-1']}  0 {counts['0']}" in out
    assert f"margin {margin:g}" in out and "rows: 5" in out and "unscored rows (sign 0): 0" in out
    if margin:
        assert 0 in expected  # the margin turns some pairs into ties

    dataset = load_preference_data(DataSpec(str(output)))
    assert dataset.objectives == ("quality", "verbosity", "concise")
    kept = [i for i, row in enumerate(written) if any(row[f"raco_s_{k}"] for k in dataset.objectives)]
    assert [row.signs[2] for row in dataset.rows] == [expected[i] for i in kept]
    assert main(["data", "inspect", str(output), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["objectives"] == ["quality", "verbosity", "concise"]
    assert stats["signs"]["concise"] == {key: [expected[i] for i in kept].count(int(key)) for key in counts}


def test_python_scorer_nan_row_is_zero_and_reported(capsys, write_jsonl, tmp_path):
    scorer = tmp_path / "my_scores.py"
    scorer.write_text(
        "def chars(prompts, responses):\n"
        "    return [float('nan') if r == 'blue' else len(r) for r in responses]\n",
        encoding="utf-8",
    )
    data = write_jsonl(pairwise_rows())
    output = tmp_path / "out.jsonl"
    spec = f"python:function={scorer}:chars"
    status, out, err = label(
        capsys, str(data), "--scorer", spec, "--objective", "long", "--output", str(output)
    )
    assert status == 0, err
    expected = [1 if len(a) > len(b) else -1 for _, a, b, *_ in PAIRS]
    expected[2] = 0  # "blue" (response 2 of line 3) was not scored
    assert [row["raco_s_long"] for row in read_jsonl(output)] == expected
    assert "unscored rows (sign 0): 1" in out
    assert "line 3: response 2 returned NaN" in out

    status, _, err = label(
        capsys, str(data), "--scorer", spec, "--objective", "long", "--output", str(tmp_path / "x.jsonl"),
        "--on-bad", "error",
    )  # fmt: skip
    assert status == 2 and "line 3" in err and "NaN" in err and "Traceback" not in err
    assert not (tmp_path / "x.jsonl").exists()


def test_chat_messages_are_scored_on_their_text(capsys, write_jsonl, tmp_path):
    scorer = tmp_path / "seen.py"
    scorer.write_text(
        "import json\n"
        "def f(prompts, responses):\n"
        f"    open({str(tmp_path / 'seen.json')!r}, 'w').write(json.dumps([prompts, responses]))\n"
        "    return [len(p) + len(r) for p, r in zip(prompts, responses)]\n",
        encoding="utf-8",
    )
    rows = [
        {
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
            "chosen": [{"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "Hey"}],
        }
    ]
    output = tmp_path / "out.jsonl"
    status, _, err = label(
        capsys, str(write_jsonl(rows)), "--scorer", f"python:function={scorer}:f", "--objective", "warm",
        "--output", str(output),
    )  # fmt: skip
    assert status == 0, err
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == [["Hi?", "Hi?"], ["Hello!", "Hey"]]
    written = read_jsonl(output)[0]
    # a TRL file without sign columns loads as `preference` (+1): that objective is written too
    assert written["raco_s_warm"] == 1 and written["raco_s_preference"] == 1
    assert load_preference_data(DataSpec(str(output))).objectives == ("preference", "warm")


def test_data_flags_and_overwrite(capsys, write_jsonl, tmp_path):
    rows = [
        {"question": p, "a": x, "b": y, "raco_s_quality": q, "raco_s_concise": 0} for p, x, y, q, _ in PAIRS
    ]
    data = write_jsonl(rows)
    output = tmp_path / "out.jsonl"
    argv = [
        str(data), "--scorer", "length:unit=characters", "--objective", "concise", "--lower",
        "--output", str(output), "--data.columns", "prompt=question,response_1=a,response_2=b",
    ]  # fmt: skip
    status, _, err = label(capsys, *argv)
    assert status == 2 and "raco_s_concise" in err and "--overwrite-column" in err
    assert not output.exists()
    status, _, err = label(capsys, *argv, "--overwrite-column")
    assert status == 0, err
    expected = [1 if len(a) < len(b) else -1 if len(a) > len(b) else 0 for _, a, b, *_ in PAIRS]
    assert [row["raco_s_concise"] for row in read_jsonl(output)] == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scorer", "lenght"], "did you mean `length`"),
        (["--scorer", "length:units=words"], "did you mean `unit`"),
        (["--scorer", "rouge"], "--reference"),
        (["--margin", "-1"], "--margin"),
        (["--objective", "a b"], "--objective"),
        (["--output", "{tmp}/out.csv"], "JSON Lines"),
        (["--data.columns", "prompt=questoin"], "did you mean 'question'"),
        (["--reference", "answr"], "did you mean 'answer'"),
        (["--data.adapter", "pku_saferlhf"], "pku_saferlhf adapter"),
    ],
)
def test_bad_input_exits_2_without_output(capsys, write_jsonl, tmp_path, argv, message):
    rows = [{"question": p, "answer": a, "response_1": a, "response_2": b} for p, a, b, *_ in PAIRS]
    data = write_jsonl(rows)
    output = tmp_path / "out.jsonl"
    given = {"--scorer": "length", "--objective": "concise", "--output": str(output)}
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    given.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    status, _, err = label(capsys, str(data), *(x for pair in given.items() for x in pair))
    assert status == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("out.*"))


def test_missing_file(capsys, tmp_path):
    output = tmp_path / "out.jsonl"
    argv = ["--scorer", "length", "--objective", "x", "--output", str(output)]
    status, _, err = label(capsys, str(tmp_path / "nope.jsonl"), *argv)
    assert status == 2 and "no such file" in err and not output.exists()


def test_pairwise_without_sign_columns_gets_its_first_objective(capsys, write_jsonl, tmp_path):
    rows = [{"prompt": p, "response_1": a, "response_2": b} for p, a, b, *_ in PAIRS]
    output = tmp_path / "out.jsonl"
    argv = ["--scorer", "length", "--objective", "long", "--output", str(output)]
    status, _, err = label(capsys, str(write_jsonl(rows)), *argv)
    assert status == 0, err
    assert [row["raco_s_long"] for row in read_jsonl(output)] == by_hand(0.0, False)


def test_reddit_label_layout_gets_faithfulness(capsys, assets, tmp_path):
    output = tmp_path / "reddit3.jsonl"
    argv = ["--scorer", "length:unit=characters", "--objective", "faithfulness", "--output", str(output)]
    status, out, err = label(capsys, str(assets / "raco_reddit.jsonl"), *argv)
    assert status == 0, err
    assert "column Faithfulness" in out
    dataset = load_preference_data(DataSpec(str(output)))
    assert dataset.objectives == ("quality", "verbosity", "faithfulness")
