"""Output helpers shared by the ``bench_*.py`` scripts.

Every benchmark prints a markdown table, may write its full result as JSON (``--json``)
and may put the table into a doc between a pair of HTML-comment markers (``--markdown``),
so that rerunning a benchmark refreshes the doc in place.

The scripts run as ``python benchmarks/bench_x.py``, which puts this folder on ``sys.path``;
they also add it themselves so that ``runpy.run_path`` and ``python -m`` work from anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def replace_marked_block(
    path: Path,
    begin: str,
    end: str,
    table: str,
    heading: str | None = None,
    *,
    new_file: str = "",
    required: bool = False,
) -> None:
    """Puts ``table`` between the ``begin`` and ``end`` markers of the doc at ``path``.

    Where the markers are absent, the marked block is appended to the doc (under a
    ``## heading`` section when ``heading`` is given) unless ``required`` is set.

    Args:
        path: The markdown file; created when it does not exist (unless ``required``).
        begin: The opening marker, e.g. ``"<!-- bench_x:begin -->"``.
        end: The closing marker.
        table: The text that goes between the markers.
        heading: Title of the section the block is appended under; ``None`` appends the
            bare block after a blank line.
        new_file: The text to start from when ``path`` does not exist.
        required: The doc must exist and hold the markers (for docs where the table
            must stay at a chosen place): raise instead of creating or appending.

    Raises:
        FileNotFoundError: ``required`` is set and ``path`` does not exist.
        SystemExit: ``required`` is set and the doc lacks the markers.
    """
    text = path.read_text() if required or path.exists() else new_file
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    elif required:
        raise SystemExit(f"{path}: markers {begin} ... {end} not found")
    elif heading is None:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n{block}\n"
    path.write_text(text)


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Writes ``result`` as indented JSON to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def emit(
    result: dict[str, Any],
    table: str,
    json_path: Path | None = None,
    markdown_path: Path | None = None,
    markers: tuple[str, str] | None = None,
    **block_options: Any,
) -> None:
    """Prints ``table``, then writes the JSON result and updates the doc where asked.

    Args:
        result: The full benchmark result (what ``--json`` gets).
        table: The markdown table to print and to put into the doc.
        json_path: Where to write ``result``; ``None`` writes nothing.
        markdown_path: The doc to update; ``None`` leaves docs alone.
        markers: The ``(begin, end)`` markers of the doc's block; needed with
            ``markdown_path``.
        **block_options: Passed on to :func:`replace_marked_block` (``heading``,
            ``new_file``, ``required``).

    Raises:
        ValueError: ``markdown_path`` is given without ``markers``.
    """
    print(table)
    if json_path is not None:
        write_json(json_path, result)
    if markdown_path is not None:
        if markers is None:
            raise ValueError("markdown_path needs markers")
        begin, end = markers
        replace_marked_block(markdown_path, begin, end, table, **block_options)
