"""Console scripts (`fer-train`, `fer-predict`, ...): each runs the `main` of its `python -m fer.X`
module, importing it only when called so that one command never loads another's dependencies."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from fer.common import run_cli


def _command(module: str) -> Callable[[], None]:
    def run() -> None:
        run_cli(importlib.import_module(module).main)

    run.__doc__ = f"python -m {module}"
    return run


train = _command("fer.train")
evaluate = _command("fer.evaluate")
predict = _command("fer.predict")
detect = _command("fer.detect")
analyze = _command("fer.analyze")
export = _command("fer.export")
plot = _command("fer.plot")
data = _command("fer.data")
serve = _command("fer.serve")
