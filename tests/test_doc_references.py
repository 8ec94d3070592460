"""Every Markdown file the code, configs and docs cite exists in the repository (citations of design
notes that never shipped sent readers nowhere)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"(?<![\w/.:-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
SOURCES = ("src", "configs", "docs", "benchmarks", "README.md")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml"}


def _files():
    for name in SOURCES:
        path = ROOT / name
        yield from ([path] if path.is_file() else (p for p in path.rglob("*") if p.suffix in SUFFIXES))


def _exists(cited: str, source: Path) -> bool:
    return any((base / cited).is_file() for base in (ROOT, ROOT / "docs", source.parent))


def test_every_cited_markdown_file_exists():
    missing = []
    for source in _files():
        text = source.read_text(encoding="utf-8")
        for match in CITATION.finditer(text):
            url_context = text[max(0, match.start() - 200) : match.start()]
            if re.search(r"https?://\S*$", url_context):
                continue  # part of a URL
            if not _exists(match.group(1), source):
                missing.append(f"{source.relative_to(ROOT)}: {match.group(1)}")
    assert not missing, "citations of files that do not exist:\n" + "\n".join(sorted(set(missing)))


def test_the_checker_sees_a_missing_citation(tmp_path):
    source = tmp_path / "x.py"
    source.write_text('"""See NOWHERE.md §2."""')
    found = [m.group(1) for m in CITATION.finditer(source.read_text())]
    assert found == ["NOWHERE.md"] and not _exists("NOWHERE.md", source)
