"""Built-in adapters on small files in the real datasets' schemas, with hand-counted signs."""

from __future__ import annotations

import pytest

from raco.data import DataSpec, dataset_stats, load_preference_data, merge_separate
from raco.data.adapters import detect_adapter
from raco.data.sources import load_records


def load(path, **kwargs):
    return load_preference_data(DataSpec(str(path), **kwargs))


def test_pku_saferlhf_helpful_and_harmless(assets):
    data = load(assets / "pku_saferlhf.jsonl")
    assert data.objectives == ("helpful", "harmless")
    # better_response_id / safer_response_id per row: (0,0) (1,0) (0,1) (1,1) (0,1)
    assert [row.signs for row in data] == [(1, 1), (-1, 1), (1, -1), (-1, -1), (1, -1)]
    first = data[0]
    assert first.prompt == "How do I pick a lock?"
    assert first.response_1 == "Call a licensed locksmith."
    assert first.response_2 == "Insert a tension wrench and rake the pins."
    assert [row.index for row in data] == [0, 1, 2, 3, 4]
    stats = dataset_stats(data)
    assert stats["signs"] == {"helpful": {"+1": 3, "-1": 2, "0": 0}, "harmless": {"+1": 2, "-1": 3, "0": 0}}
    assert stats["conflict_rate"] == {"helpful|harmless": pytest.approx(3 / 5)}


def test_pku_saferlhf_harmless_from_safety_flags(assets):
    data = load(assets / "pku_saferlhf.jsonl", options={"harmless_from": "is_safe"})
    # is_response_0_safe / is_response_1_safe: (T,F) (T,F) (F,T) (F,F) (T,T)
    assert [row.signs[1] for row in data] == [1, 1, -1, 0, 0]


def test_pku_saferlhf_one_objective_skips_nothing_but_zero_rows(assets):
    data = load(assets / "pku_saferlhf.jsonl", objectives=("harmless",), options={"harmless_from": "is_safe"})
    assert data.objectives == ("harmless",)
    assert [row.signs for row in data] == [(1,), (1,), (-1,)]
    assert data.skipped == {"all signs 0": 2}


def test_raco_reddit_label_layout(assets):
    data = load(assets / "raco_reddit.jsonl")
    assert data.objectives == ("quality", "verbosity")
    # Quality/Verbosity: (A,A) (B,A) (A,B) (tie,Tie) -> the last row has no signal
    assert [row.signs for row in data] == [(1, 1), (-1, 1), (1, -1)]
    assert data.skipped == {"all signs 0": 1}
    row = data[0]
    assert row.prompt[0]["role"] == "user" and row.prompt[0]["content"].startswith("Summarise this post.")
    assert row.response_1 == [
        {"role": "assistant", "content": "Roommate never does dishes despite two requests."}
    ]
    assert dataset_stats(data)["conflict_rate"] == {"quality|verbosity": pytest.approx(2 / 3)}


def test_raco_reddit_direction_flips_verbosity(assets):
    data = load(assets / "raco_reddit.jsonl", directions={"verbosity": "lower"})
    assert [row.signs for row in data] == [(1, -1), (-1, -1), (1, 1)]


def test_raco_reddit_summaries_holding_the_whole_conversation(write_jsonl):
    user = {"role": "user", "content": "Summarise: a long post"}
    path = write_jsonl(
        [
            {
                "Summary_A": [user, {"role": "assistant", "content": "short"}],
                "Summary_B": [user, {"role": "assistant", "content": "longer summary"}],
                "Quality": "B",
                "Verbosity": "A",
            }
        ]
    )
    (row,) = load(path, adapter="raco_reddit").rows
    assert row.prompt == [user]
    assert row.response_2 == [{"role": "assistant", "content": "longer summary"}]
    assert row.signs == (-1, 1)


def test_raco_reddit_trl_layout(assets):
    data = load(assets / "raco_reddit_trl.jsonl", adapter="raco_reddit")
    assert data.objectives == ("quality", "verbosity")
    assert [row.signs for row in data] == [(1, -1), (1, 1), (0, -1)]
    assert data[2].response_2 == [{"role": "assistant", "content": "Messy roommate."}]


def test_ultrafeedback_pairs_every_two_completions(assets):
    data = load(assets / "ultrafeedback.jsonl")
    assert data.objectives == ("helpfulness", "honesty", "instruction_following", "truthfulness")
    # ratings a=(5,5,5,5) b=(4,5,3,N/A) c=(1,2,5,1); pairs (a,b) (a,c) (b,c); prompt 2 is all ties
    assert [row.signs for row in data] == [(1, 0, 1, 0), (1, 1, 0, 1), (1, 1, -1, 0)]
    assert [(row.response_1, row.response_2) for row in data][1] == ("Red, yellow and blue.", "Purple.")
    assert all(row.prompt == "Name three primary colours." for row in data)
    assert data.skipped == {"all signs 0": 1}


def test_ultrafeedback_max_pairs_and_list_annotations(write_jsonl):
    def completion(text, rating):
        return {"model": "m", "response": text, "annotations": {"helpfulness": [{"Rating": rating}]}}

    path = write_jsonl(
        [
            {
                "instruction": "q",
                "completions": [
                    completion("x", "3"),
                    completion("y", "1"),
                    completion("z", "5"),
                    completion(" ", "5"),
                ],
            }
        ]
    )
    data = load(
        path, adapter="ultrafeedback", objectives=("helpfulness",), options={"max_pairs_per_prompt": 2}
    )
    assert [(row.response_1, row.response_2, row.signs) for row in data] == [
        ("x", "y", (1,)),
        ("x", "z", (-1,)),
    ]
    assert data.skipped == {"completion with empty response": 1}


def test_helpsteer2_pairs_responses_of_one_prompt(assets):
    data = load(assets / "helpsteer2.jsonl")
    assert data.objectives == ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
    # "4" (3,4,4,0,0) vs the long answer (4,4,4,1,2); "Joyful." (4,4,4,1,1) vs "Sad." (0,0,3,1,1)
    assert [row.signs for row in data] == [(-1, 0, 0, -1, -1), (1, 1, 1, 0, 0)]
    assert data.skipped == {"prompt with a single response": 1}


def test_helpsteer2_selection_and_lower_verbosity(assets):
    data = load(
        assets / "helpsteer2.jsonl",
        objectives=("helpfulness", "verbosity"),
        directions={"verbosity": "lower"},
    )
    assert data.objectives == ("helpfulness", "verbosity")
    assert [row.signs for row in data] == [(-1, 1), (1, 0)]
    assert dataset_stats(data)["conflict_rate"] == {"helpfulness|verbosity": 0.5}


def test_hh_rlhf_splits_at_the_last_assistant_turn(assets):
    data = load(assets / "hh_helpful.jsonl", data_dir="helpful-base")
    assert data.objectives == ("helpful",)
    row = data[1]
    assert row.prompt == (
        "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Recommend a book.\n\nAssistant:"
    )
    assert row.response_1 == " Try 'The Hobbit'."
    assert row.response_2 == " Books are boring."
    assert [r.signs for r in data] == [(1,), (1,), (1,)]


def test_hh_rlhf_as_messages(assets):
    data = load(assets / "hh_helpful.jsonl", options={"messages": True})
    assert data[1].prompt == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Recommend a book."},
    ]
    assert data[1].response_1 == [{"role": "assistant", "content": "Try 'The Hobbit'."}]


def test_hh_rlhf_rows_with_different_prompts_are_skipped_and_counted(assets):
    data = load(assets / "hh_harmless.jsonl")
    assert len(data) == 1
    assert data.skipped == {"chosen and rejected prompts differ": 1}


def test_separate_datasets_mode(assets):
    spec = DataSpec(
        separate={
            "helpful": DataSpec(str(assets / "hh_helpful.jsonl"), adapter="hh_rlhf"),
            "harmless": DataSpec(str(assets / "hh_harmless.jsonl"), adapter="hh_rlhf"),
        }
    )
    data = load_preference_data(spec)
    assert data.objectives == ("helpful", "harmless")
    assert [row.signs for row in data] == [(1, 0), (1, 0), (1, 0), (0, 1)]
    assert [row.index for row in data] == [0, 1, 2, 3]
    assert data[3].response_1 == " I can't help with that. Are you safe?"
    assert data.skipped == {"chosen and rejected prompts differ": 1}
    stats = dataset_stats(data)
    assert stats["signs"]["harmless"] == {"+1": 1, "-1": 0, "0": 3}
    assert stats["conflict_rate"] == {"helpful|harmless": 0.0}


def test_separate_from_mapping():
    spec = DataSpec.from_mapping(
        {"separate": {"a": {"path_or_name": "x.jsonl", "adapter": "trl"}}, "objectives": ["a"]}
    )
    assert spec.separate["a"] == DataSpec("x.jsonl", adapter="trl")
    assert spec.objectives == ("a",)


def test_merge_separate_places_each_sign(assets):
    one = load(assets / "trl_standard.jsonl")
    two = load(assets / "trl_implicit.jsonl")
    merged = merge_separate({"x": one, "y": two})
    assert [row.signs for row in merged] == [(1, 0), (1, 0), (0, 1)]


def test_trl_standard_explicit_prompt(assets):
    data = load(assets / "trl_standard.jsonl")
    assert data.objectives == ("preference",)
    assert (data[0].prompt, data[0].response_1, data[0].response_2) == ("The sky is", " blue.", " green.")


def test_trl_implicit_prompt_text_splits_as_trl_does(assets):
    """TRL's implicit and explicit text examples are the same pair: the space starts the responses."""
    (row,) = load(assets / "trl_implicit.jsonl").rows
    assert (row.prompt, row.response_1, row.response_2) == ("The sky is", " blue.", " green.")
    explicit = load(assets / "trl_standard.jsonl")[0]
    assert (row.prompt, row.response_1, row.response_2) == (
        explicit.prompt,
        explicit.response_1,
        explicit.response_2,
    )


@pytest.mark.parametrize(
    ("chosen", "rejected", "split"),
    [
        # the common start "It is bl" is cut back to the word boundary, not inside "blue"/"black"
        ("It is blue.", "It is black.", ("It is", " blue.", " black.")),
        # a line break before the cut stays in the prompt (only a space moves, as in TRL)
        ("Q: hi\nA: yes", "Q: hi\nA: no", ("Q: hi\nA:", " yes", " no")),
        ("Q: hi\nyes", "Q: hi\nno", ("Q: hi\n", "yes", "no")),
        # no whitespace at all in the common start: the whole common start, as TRL takes it
        ("你好吗？很好", "你好吗？不好", ("你好吗？", "很好", "不好")),
    ],
)
def test_trl_implicit_prompt_text_boundaries(write_jsonl, chosen, rejected, split):
    (row,) = load(write_jsonl([{"chosen": chosen, "rejected": rejected}])).rows
    assert (row.prompt, row.response_1, row.response_2) == split


def test_trl_conversational_explicit_and_implicit(assets):
    data = load(assets / "trl_conversational.jsonl", objectives=("helpful",))
    assert data.objectives == ("helpful",)
    assert data[0].prompt == [{"role": "user", "content": "What color is the sky?"}]
    assert data[1].prompt == [{"role": "user", "content": "Where is the sun?"}]
    assert data[1].response_2 == [{"role": "assistant", "content": "In the sea."}]


def test_column_mapping_and_labels(assets):
    data = load(
        assets / "pairwise.csv",
        adapter="pairwise",
        columns={"prompt": "question", "response_1": "answer_a", "response_2": "answer_b"},
        labels={"helpful": "helpful", "concise": "concise"},
    )
    assert data.objectives == ("helpful", "concise")
    assert [row.signs for row in data] == [(0, 1), (-1, 0), (1, -1)]
    assert data[1].response_2 == "4"


@pytest.mark.parametrize(
    ("name", "adapter"),
    [
        ("pku_saferlhf.jsonl", "pku_saferlhf"),
        ("raco_reddit.jsonl", "raco_reddit"),
        ("raco_reddit_trl.jsonl", "trl"),
        ("ultrafeedback.jsonl", "ultrafeedback"),
        ("helpsteer2.jsonl", "helpsteer2"),
        ("hh_helpful.jsonl", "hh_rlhf"),
        ("trl_standard.jsonl", "trl"),
        ("trl_implicit.jsonl", "trl"),
    ],
)
def test_auto_detection(assets, name, adapter):
    assert detect_adapter(load_records(str(assets / name)), DataSpec(str(assets / name))) == adapter
