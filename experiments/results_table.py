"""The results tables of docs/results.md and README.md, written from the committed records.

Each results row is one JSON record in docs/results/ (the file's name is the row's id):

    name                  what was trained (markdown)
    shipped               true for the model in checkpoints/
    member                its member number, for a network of the shipped ensemble
    commands              the command(s) that made the figures, as a list
    parameters_millions, epochs, best_epoch, epochs_note
    fitting_minutes       the training's wall time without data loading and scoring
    fitting_note          what the minutes were made of (CPU shared, resumed, ...)
    machine               {"cpu", "cores", "bf16", "gpu"}: what it was trained (or scored) on
                          (bf16: true, false, or for a run made on two machines a text saying
                          which part had it)
    metrics               fer.evaluate on PublicTest (3,589 faces): accuracy, accuracy_flip
                          (--tta flip), accuracy_without_leaked (--skip leaked.txt, 3,341 faces),
                          in percent; macro_f1, macro_f1_flip
    note                  one line: why it was not shipped, what it showed
    readme_name           also in README's short table, under this name
    curve                 [minutes, val/acc] at the end of each epoch, as the run validated itself
                          (experiments/time_to_accuracy.py draws it)

A record without metrics is a recipe not yet run. Fields that were not recorded are left out.
The tables go between marker comments; nothing else in either file is touched.

    python experiments/results_table.py           # rewrite the tables from the records
    python experiments/results_table.py --check   # exit 1 if a file disagrees with the records
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.common import run_cli, write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECORDS = "docs/results"
FIELDS = {
    "name",
    "shipped",
    "member",
    "commands",
    "parameters_millions",
    "epochs",
    "best_epoch",
    "epochs_note",
    "fitting_minutes",
    "fitting_note",
    "machine",
    "metrics",
    "note",
    "readme_name",
    "curve",
}
METRICS = {"accuracy", "accuracy_flip", "accuracy_without_leaked", "macro_f1", "macro_f1_flip"}
MACHINE = {"cpu", "cores", "bf16", "gpu"}


def marks(name: str) -> tuple[str, str]:
    """The comments a generated block sits between."""
    return (
        f"<!-- {name}: begin (experiments/results_table.py writes this from {RECORDS}/*.json) -->",
        f"<!-- {name}: end -->",
    )


def load(folder: Path) -> dict[str, dict]:
    """The records by id, checked for unknown or missing fields (a typo would drop a figure)."""
    records = {}
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        problems = sorted(set(r) - FIELDS) + sorted(set(r.get("metrics", {})) - METRICS)
        problems += sorted(set(r.get("machine", {})) - MACHINE)
        problems += [f"no {k}" for k in ("name", "shipped", "commands") if k not in r]
        if "metrics" in r and "machine" not in r:
            problems.append("metrics without machine")
        if "machine" in r:
            problems += [f"machine without {k}" for k in ("cores", "bf16") if k not in r["machine"]]
        if "readme_name" in r and "metrics" not in r:
            problems.append("readme_name without metrics (the README's table lists measured runs)")
        if problems:
            raise SystemExit(f"error: {path}: {', '.join(problems)}")
        records[path.stem] = r
    if not records:
        raise SystemExit(f"error: no records in {folder}")
    return records


def order(records: dict[str, dict]) -> list[str]:
    """The shipped model, its members in order, then the rest best first, then recipes not run."""

    def key(rid: str) -> tuple:
        r = records[rid]
        acc = r.get("metrics", {}).get("accuracy")
        return (not r["shipped"], r.get("member", 99), acc is None, -(acc or 0), rid)

    return sorted(records, key=key)


def pct(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:.2f}%" if abs(100 * v - round(100 * v)) < 1e-6 else f"{v:.3f}%"


def pair(a, b, fmt) -> str:
    return fmt(a) if b is None else f"{fmt(a)} / {fmt(b)}"


def millions(v: float | None) -> str:
    """Parameters to three significant digits, as 0.70 M, 6.79 M, 14.8 M."""
    return "" if v is None else (f"{v:.2f} M" if v < 1 else f"{v:.3g} M")


def f1(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def machine(m: dict | None, short: bool = False) -> str:
    if not m:
        return ""
    # a run made on two machines says which part ran on which: bf16 is then that text
    bf16 = (
        m["bf16"]
        if isinstance(m["bf16"], str)
        else ("native bf16" if m["bf16"] else "no bf16 (fp32)")
    )
    if short:
        return f"{m['cores']}-core CPU with {bf16}"
    gpu = {True: ", GPU", False: ", no GPU"}.get(m.get("gpu"), "")
    return f"{m['cores']} cores, {m.get('cpu', 'CPU')}{gpu}"


def fitting(r: dict) -> str:
    minutes = r.get("fitting_minutes")
    note = r.get("fitting_note", "")
    if minutes is None:
        return note
    return f"{minutes} min" + (f" ({note})" if note else "")


def epochs(r: dict) -> str:
    if "epochs" not in r:
        return ""
    extra = [f"best {r['best_epoch']}"] if "best_epoch" in r else []
    extra += [r["epochs_note"]] if "epochs_note" in r else []
    return f"{r['epochs']}" + (f" ({', '.join(extra)})" if extra else "")


def commands(r: dict) -> str:
    return "; ".join(f"`{c}`" for c in r["commands"])


def table(rows: list[dict], columns: list[tuple[str, str, object]], machine_of) -> list[str]:
    """A markdown table; a machine shared by every row is said once under it, not per row."""
    machines = sorted({machine_of(r) for r in rows})
    if len(machines) > 1:
        columns = [*columns[:-1], ("machine", "---", machine_of), columns[-1]]
    lines = [
        "| " + " | ".join(c[0] for c in columns) + " |",
        "| " + " | ".join(c[1] for c in columns) + " |",
    ]
    for r in rows:
        cells = [str(c[2](r)).replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if len(machines) == 1 and machines[0]:
        lines += ["", f"Machine: {machines[0]}."]
    return lines


def results_page(records: dict[str, dict]) -> str:
    """The tables of docs/results.md: the shipped model, the other measured runs, the rest."""
    ids = order(records)

    def m(r):
        return r.get("metrics", {})

    columns = [
        ("model", "---", lambda r: r["name"]),
        (
            "parameters",
            "---:",
            lambda r: millions(r.get("parameters_millions")),
        ),
        ("epochs", "---:", epochs),
        ("fitting time", "---", fitting),
        (
            "PublicTest plain / flip TTA",
            "---:",
            lambda r: pair(m(r).get("accuracy"), m(r).get("accuracy_flip"), pct),
        ),
        ("without leaked", "---:", lambda r: pct(m(r).get("accuracy_without_leaked"))),
        (
            "macro-F1 plain / flip",
            "---:",
            lambda r: pair(m(r).get("macro_f1"), m(r).get("macro_f1_flip"), f1),
        ),
        ("note", "---", lambda r: r.get("note", "")),
        ("command", "---", commands),
    ]
    groups = [
        (
            "The shipped model and its members",
            [i for i in ids if records[i]["shipped"] or "member" in records[i]],
        ),
        (
            "Measured, not shipped (best first)",
            [
                i
                for i in ids
                if not records[i]["shipped"]
                and "member" not in records[i]
                and "metrics" in records[i]
            ],
        ),
        ("Not yet run", [i for i in ids if "metrics" not in records[i]]),
    ]
    out: list[str] = []
    for title, group in groups:
        if not group:
            continue
        rows = [records[i] for i in group]
        if title == "Not yet run":  # no figures: what it is, what it needs, how to run it
            cols = [
                c for c in columns if c[0] in ("model", "parameters", "epochs", "note", "command")
            ]
        else:
            cols = columns
        out += [f"**{title}**", "", *table(rows, cols, lambda r: machine(r.get("machine"))), ""]
    return "\n".join(out).rstrip("\n")


def readme_table(records: dict[str, dict]) -> str:
    """README's short table: the records that name themselves for it."""
    rows = [records[i] for i in order(records) if "readme_name" in records[i]]
    columns = [
        ("model", "---", lambda r: r["readme_name"]),
        ("PublicTest", "---:", lambda r: pct(r["metrics"].get("accuracy"))),
        (
            "without leaked faces",
            "---:",
            lambda r: pct(r["metrics"].get("accuracy_without_leaked")),
        ),
        ("training time", "---", fitting),
        ("command", "---", commands),
    ]
    return "\n".join(table(rows, columns, lambda r: machine(r.get("machine"), short=True)))


def replace_block(text: str, name: str, body: str, path: Path) -> str:
    begin, end = marks(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"error: {path} needs one pair of the markers {begin} ... {end}")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def outputs(root: Path) -> dict[Path, tuple[str, str]]:
    """Each file the records write into, with what it holds now and what it should hold."""
    records = load(root / RECORDS)
    out = {}
    for rel, name, body in (
        ("docs/results.md", "results-tables", results_page(records)),
        ("README.md", "results-short", readme_table(records)),
    ):
        path = root / rel
        text = path.read_text()
        out[path] = (text, replace_block(text, name, body, path))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 on a difference")
    p.add_argument("--root", type=Path, default=ROOT, help="the repository")
    args = p.parse_args(argv)
    stale = []
    for path, (now, wanted) in outputs(args.root).items():
        if now == wanted:
            continue
        stale.append(path)
        if not args.check:
            write_text(path, wanted)  # atomic: an interrupt leaves the old file, never half of one
            print(f"wrote the tables of {path}")
    if args.check and stale:
        for path in stale:
            print(
                f"error: {path}: its table disagrees with {RECORDS}/*.json; "
                "run python experiments/results_table.py",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
