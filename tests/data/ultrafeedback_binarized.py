"""HuggingFaceH4/ultrafeedback_binarized in its exact public layout (for the data tests).

The hub repository holds ``README.md`` (whose YAML ``configs`` map the splits) and
``data/<split>-00000-of-00001.parquet`` for ``train_prefs``, ``test_prefs``, ``train_sft``, ...; each
row has a text ``prompt``, a ``prompt_id``, ``chosen``/``rejected``/``messages`` as lists of
``{content, role}`` holding the whole conversation (user turn included), and float scores.
"""

from __future__ import annotations

from pathlib import Path

QUESTIONS = [
    ("What is the capital of France?", "Paris is the capital of France.", "I think it is Lyon."),
    ("Name a prime number.", "7 is a prime number.", "9 is prime."),
    ("Translate 'gato' to English.", "'Gato' means 'cat'.", "It means dog."),
]


def binarized_rows(questions):
    """Rows in the exact public schema of ultrafeedback_binarized (train_prefs / test_prefs)."""
    rows = []
    for position, (question, good, bad) in enumerate(questions):
        user = {"content": question, "role": "user"}
        chosen = [user, {"content": good, "role": "assistant"}]
        rows.append(
            {
                "prompt": question,
                "prompt_id": f"{position:064x}",
                "chosen": chosen,
                "rejected": [user, {"content": bad, "role": "assistant"}],
                "messages": chosen,
                "score_chosen": 8.5,
                "score_rejected": 3.0,
            }
        )
    return rows


def write_binarized_parquet(path: Path, rows) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.struct([("content", pa.string()), ("role", pa.string())])
    schema = pa.schema(
        [
            ("prompt", pa.string()),
            ("prompt_id", pa.string()),
            ("chosen", pa.list_(message)),
            ("rejected", pa.list_(message)),
            ("messages", pa.list_(message)),
            ("score_chosen", pa.float64()),
            ("score_rejected", pa.float64()),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), str(path))
    return path


README = """---
configs:
- config_name: default
  data_files:
  - split: train_prefs
    path: data/train_prefs-*
  - split: test_prefs
    path: data/test_prefs-*
---
# ultrafeedback_binarized (test copy)
"""


def write_binarized_folder(folder: Path) -> Path:
    """A local copy of the hub repository with splits train_prefs (3 rows) and test_prefs (1 row)."""
    write_binarized_parquet(folder / "data" / "train_prefs-00000-of-00001.parquet", binarized_rows(QUESTIONS))
    write_binarized_parquet(
        folder / "data" / "test_prefs-00000-of-00001.parquet", binarized_rows(QUESTIONS[:1])
    )
    (folder / "README.md").write_text(README)
    return folder
