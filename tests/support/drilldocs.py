"""What docs/drills.md shows an SRE, for the tests that hold the page to the code and run its example."""

from __future__ import annotations

from pathlib import Path

from tests.support.stack import REPO

DRILLS = REPO / "docs" / "drills.md"


def worked_example_text() -> str:
    """The worked example's experiment file, exactly as docs/drills.md shows it (the YAML block after its marker)."""
    text = DRILLS.read_text(encoding="utf-8")
    block = text[text.index("<!-- worked-example"):]
    start = block.index("```yaml\n") + len("```yaml\n")
    return block[start:block.index("\n```", start)] + "\n"


def write_worked_example(folder: Path) -> Path:
    """The worked example saved as the page says, ``primary-slow.yaml`` in ``folder``."""
    path = folder / "primary-slow.yaml"
    path.write_text(worked_example_text(), encoding="utf-8")
    return path
