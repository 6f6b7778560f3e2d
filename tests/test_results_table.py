"""The results tables agree with the records they are written from (experiments/results_table.py)."""

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import results_table  # noqa: E402


def copy_of_the_repository(tmp_path: Path) -> Path:
    """The files the script reads and writes, copied where a test may change them."""
    shutil.copytree(ROOT / "docs" / "results", tmp_path / "docs" / "results")
    shutil.copy(ROOT / "docs" / "results.md", tmp_path / "docs" / "results.md")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def test_the_committed_tables_agree_with_their_records(capsys):
    assert results_table.main(["--check", "--root", str(ROOT)]) == 0, capsys.readouterr().err


def test_a_changed_record_is_caught_then_written_into_both_tables(tmp_path, capsys):
    root = copy_of_the_repository(tmp_path)
    record = root / "docs" / "results" / "member1_cnn5_strong_ema.json"  # a row of both tables
    data = json.loads(record.read_text())
    assert data["metrics"]["accuracy"] == 69.18 and "readme_name" in data
    data["metrics"]["accuracy"] = 69.31
    record.write_text(json.dumps(data, indent=2) + "\n")
    readme_before = (root / "README.md").read_text()

    assert results_table.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "README.md" in err and "results.md" in err
    assert (root / "README.md").read_text() == readme_before  # --check changes nothing

    assert results_table.main(["--root", str(root)]) == 0
    assert results_table.main(["--check", "--root", str(root)]) == 0
    for name in ("README.md", "docs/results.md"):
        text = (root / name).read_text()
        assert "69.31%" in text and "| 69.18%" not in text
    # only the block between the markers changed
    after = (root / "README.md").read_text()
    begin, end = results_table.marks("results-short")
    assert after.split(begin)[0] == readme_before.split(begin)[0]
    assert after.split(end)[1] == readme_before.split(end)[1]


def test_a_record_with_a_misspelt_field_is_refused(tmp_path):
    root = copy_of_the_repository(tmp_path)
    (root / "docs" / "results" / "typo.json").write_text(
        json.dumps({"name": "x", "shipped": False, "commands": ["c"], "metrics": {"acuracy": 1}})
    )
    with pytest.raises(SystemExit, match="typo.json: acuracy"):
        results_table.main(["--check", "--root", str(root)])


def test_the_shipped_record_holds_the_shipped_models_own_figures():
    """checkpoints/model.json records what ship.sh measured on the exported files."""
    records = results_table.load(ROOT / "docs" / "results")
    (shipped,) = [r for r in records.values() if r["shipped"]]
    measured = json.loads((ROOT / "checkpoints" / "model.json").read_text())["metrics"]
    figures = shipped["metrics"]
    assert figures["accuracy"] == round(100 * measured["val_tta_none"]["accuracy"], 2)
    assert figures["accuracy_flip"] == round(100 * measured["val_tta_flip"]["accuracy"], 2)
    assert figures["accuracy_without_leaked"] == round(
        100 * measured["val_tta_none_skip"]["accuracy"], 2
    )
    assert figures["macro_f1"] == round(measured["val_tta_none"]["macro_f1"], 3)
