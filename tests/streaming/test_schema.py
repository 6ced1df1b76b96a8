from __future__ import annotations

from pathlib import Path

from streaming.schema import events_markdown

ROOT = Path(__file__).parents[2]


def test_events_doc_is_generated_from_the_schema():
    assert (ROOT / "docs" / "events.md").read_text() == events_markdown(), (
        "docs/events.md is stale: run `mediapulse docs-events --out docs/events.md`"
    )
