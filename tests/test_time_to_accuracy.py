"""experiments/time_to_accuracy.py: labels of lines ending close together do not overlap."""

import sys
from itertools import combinations
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from time_to_accuracy import label_places, spread  # noqa: E402


def test_spread_keeps_labels_apart_and_as_near_as_it_can():
    # the four small networks' figures, which printed on top of each other
    wanted = [68.43, 66.95, 68.21, 67.29]
    placed = spread(wanted, gap=0.5)
    assert all(abs(a - b) >= 0.5 - 1e-9 for a, b in combinations(placed, 2))
    assert sorted(range(4), key=placed.__getitem__) == sorted(range(4), key=wanted.__getitem__)
    # labels too close move as a block centred where they want to be; one far enough stays
    assert spread([10.0, 10.0], gap=2) == pytest.approx([9.0, 11.0])
    assert spread([0.0, 10.0, 10.2], gap=1) == pytest.approx([0.0, 9.6, 10.6])
    assert spread([3.0, 1.0, 7.0], gap=1) == [3.0, 1.0, 7.0]
    assert spread([], gap=1) == []


def test_label_places_spreads_only_labels_that_meet_sideways():
    anchors = [(100.0, 50.0), (104.0, 51.0), (90.0, 50.5), (400.0, 50.0)]
    places = label_places(anchors, width=30, gap=10)
    # the first three would overlap: one column at the rightmost of them, 10 apart
    column = places[:3]
    assert {x for x, _ in column} == {104.0}
    assert all(abs(a[1] - b[1]) >= 10 - 1e-9 for a, b in combinations(column, 2))
    assert sum(y for _, y in column) == pytest.approx(50 + 51 + 50.5)
    assert places[3] == (400.0, 50.0)  # far to the right: left where it is


def test_a_record_curve_is_drawn_on_the_clock_of_a_run_made_on_the_plot_machine(tmp_path):
    from time_to_accuracy import on_clock, run_curve

    record = tmp_path / "first_run.json"
    record.write_text('{"name": "x", "curve": [[2.5, 0.40], [5.0, 0.48], [7.5, 0.52]]}')
    line = run_curve(record)
    assert line == [(2.5, 0.40), (5.0, 0.48), (7.5, 0.52)]
    # the same network's epochs on the plot's machine ended at 0.4, 0.8, 1.2, 1.6 minutes
    clock = [(0.4, 0.41), (0.8, 0.50), (1.2, 0.55), (1.6, 0.57)]
    assert on_clock(line, clock) == [(0.4, 0.40), (0.8, 0.48), (1.2, 0.52)]
    with pytest.raises(SystemExit, match="fewer than 3"):
        on_clock(line, clock[:2])
    record.write_text('{"name": "x"}')
    with pytest.raises(SystemExit, match="has no curve"):
        run_curve(record)


@pytest.mark.slow  # the script end to end, as the other experiment scripts' tests (CI runs it)
def test_the_plot_draws_a_record_on_a_committed_run_clock_then_its_final_score(tmp_path):
    import json
    import subprocess

    root = Path(__file__).resolve().parents[1]
    record = tmp_path / "r.json"
    record.write_text(json.dumps({"name": "r", "curve": [[3, 0.5], [6, 0.6]]}))
    clock = root / "lightning_logs" / "shipped_member_crop40"
    script = [sys.executable, str(root / "experiments" / "time_to_accuracy.py")]
    out = tmp_path / "curves.json"
    args = ["--out", str(tmp_path / "t.png"), "--json", str(out), "--recipe", f"A={record}"]
    args += ["--clock", f"A={clock}", "--final", "A=0.7"]
    subprocess.run(script + args, check=True, capture_output=True, text=True)
    (t1, a1), (t2, a2), (t3, a3) = json.loads(out.read_text())["A"]
    # member 4's first two epochs on the plot's machine, each well under the record's 3 minutes
    assert 0 < t1 < t2 < 1.5 and (a1, a2) == (0.5, 0.6) and (t3, a3) == (t2, 0.7)
    assert (tmp_path / "t.png").stat().st_size > 0
    bad = subprocess.run(script + args[:-4] + ["--clock", "A"], capture_output=True, text=True)
    assert bad.returncode == 1 and "expected NAME=VALUE" in bad.stderr


def test_a_recipes_runs_are_read_in_the_order_of_their_numbers(tmp_path):
    """Was: version_10 read before version_2 (sorted as text), so the line ended on the earlier
    run's figures."""
    from time_to_accuracy import run_curve
    from torch.utils.tensorboard import SummaryWriter

    for version, accs in (("version_2", (0.30, 0.35)), ("version_10", (0.50, 0.60, 0.65))):
        with SummaryWriter(str(tmp_path / "lightning_logs" / version)) as w:
            for step, acc in enumerate(accs):
                w.add_scalar("val/acc", acc, step, walltime=1000.0 + 60 * step)
    assert [a for _, a in run_curve(tmp_path)] == pytest.approx([0.30, 0.35, 0.50, 0.60, 0.65])


def test_a_final_score_for_no_recipe_is_refused(tmp_path):
    """Was: a misspelt --final name was passed over in silence, its score never drawn."""
    import json
    import subprocess

    record = tmp_path / "r.json"
    record.write_text(json.dumps({"name": "r", "curve": [[3, 0.5], [6, 0.6]]}))
    script = [
        sys.executable,
        str(Path(__file__).resolve().parents[1] / "experiments" / "time_to_accuracy.py"),
    ]
    args = ["--out", str(tmp_path / "t.png"), "--recipe", f"ensemble={record}"]
    bad = subprocess.run(
        script + args + ["--final", "ensembel=0.7"], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "--final names no --recipe: ensembel" in bad.stderr
    assert not (tmp_path / "t.png").exists()
