"""One report document, written twice: Markdown (images as files beside it) and one self-contained
HTML file (images as base64 data URIs, inline CSS, every user string through ``html.escape``).

A document is a title and a list of :class:`Section`; a section holds blocks: a paragraph (``str``;
text between backticks is code, between ``**`` bold), a :class:`Table`, an :class:`Image` or
a :class:`Code` block.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1240px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
figure { margin: 1em 0; }
figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; height: auto; }
"""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    file: str  # name of the PNG in the report folder
    caption: str
    size: tuple[int, int]  # (width, height) in pixels


@dataclass
class Code:
    lines: list[str]


Block = str | Table | Image | Code


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block) -> str:
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |"]
        lines.append("|" + "---|" * len(block.header))
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Image):
        width, height = block.size
        return f"![{block.caption}]({block.file})\n\n*{block.caption}* ({width} × {height} px)"
    if isinstance(block, Code):
        return "```bash\n" + "\n".join(block.lines) + "\n```"
    return block


def to_markdown(title: str, sections: list[Section]) -> str:
    """The document as Markdown; images are referenced by file name (relative to the Markdown file)."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts += [_md_block(block) for block in section.blocks]
    return "\n\n".join(parts) + "\n"


def _html_text(text: str) -> str:
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _html_block(block: Block, folder: Path) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Image):
        data = base64.b64encode((folder / block.file).read_bytes()).decode("ascii")
        width, height = block.size
        caption = html.escape(block.caption)
        return (
            f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{caption}"><figcaption>{caption} ({width} × {height} px)</figcaption></figure>'
        )
    if isinstance(block, Code):
        return "<pre><code>" + html.escape("\n".join(block.lines)) + "</code></pre>"
    return f"<p>{_html_text(block)}</p>"


def to_html(title: str, sections: list[Section], folder: Path) -> str:
    """The document as one HTML file with no external assets: the PNGs named by :class:`Image` blocks
    are read from ``folder`` and embedded."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [_html_block(block, folder) for block in section.blocks]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
