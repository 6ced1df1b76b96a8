"""Reading the content dimension: text fitted to its warehouse column, in UTF-8 bytes."""

from __future__ import annotations

import csv
from pathlib import Path

from streaming.sources.content_dim import load_table

HEADER = ["content_id", "title", "category", "content_type", "duration_s", "publisher", "published_at"]


def write_dimension(path: Path, *rows: dict[str, str]) -> str:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, HEADER)
        writer.writeheader()
        for row in rows:
            writer.writerow({"duration_s": "60", "published_at": "2026-01-01T00:00:00Z", **row})
    return str(path)


def test_an_over_long_title_is_cut_to_1024_utf8_bytes_on_a_character_boundary(tmp_path):
    title = "x" + "é" * 600  # 1201 bytes: a cut at byte 1024 would split an "é"
    path = write_dimension(tmp_path / "content.csv", {"content_id": "c1", "title": title, "category": "news"})

    (row,) = load_table(path, "auto").to_pylist()

    assert row["title"] == "x" + "é" * 511  # 1023 bytes, the longest whole-character prefix
    assert row["category"] == "news"


def test_text_that_fits_is_kept_as_it_is(tmp_path):
    rows = [
        {"content_id": "c1", "title": "😀" * 256, "content_type": "v" * 64},  # exactly the widths
        {"content_id": "c2", "title": "", "publisher": "p"},
    ]
    path = write_dimension(tmp_path / "content.csv", *rows)

    table = load_table(path, "auto")

    assert table.column("title").to_pylist() == ["😀" * 256, ""]
    assert table.column("content_type").to_pylist() == ["v" * 64, ""]
    assert table.column("publisher").to_pylist() == ["", "p"]


def test_every_text_attribute_is_fitted_to_its_own_width(tmp_path):
    long = "ü" * 2000
    row = {"content_id": "c1", "title": long, "category": long, "content_type": long, "publisher": long}
    path = write_dimension(tmp_path / "content.csv", row)

    (fitted,) = load_table(path, "auto").to_pylist()

    widths = {"title": 1024, "category": 256, "content_type": 64, "publisher": 256}
    assert {name: len(fitted[name].encode()) for name in widths} == widths


def test_a_row_whose_content_id_is_longer_than_128_bytes_is_dropped(tmp_path, caplog):
    path = write_dimension(
        tmp_path / "content.csv", {"content_id": "é" * 65, "title": "a"}, {"content_id": "c2", "title": "b"}
    )

    table = load_table(path, "auto")

    assert table.column("content_id").to_pylist() == ["c2"]
    assert "dropped 1 rows whose content_id is longer than 128 bytes" in caplog.text
