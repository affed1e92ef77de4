"""Run one entry point on several command lines in one process, each as `python -m MODULE ARGS…` would.

The bad-input tests run many command lines that fail before any work; a fresh interpreter for each pays the
imports (torch, Lightning, Hydra: several seconds here) every time. Hydra's global state is cleared between
command lines; what else a run leaves in the process (warnings already shown, logging set-up, random state)
carries over, which command lines that fail before training do not notice.

Usage: `python -m tests.cli_runner MODULE OUT` with a JSON list of argument lists on stdin; writes a JSON list of
{returncode, stdout, stderr} to OUT. MODULE `-`: each argument list starts with its own module, so command lines
of several entry points share the one interpreter's imports.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import traceback
from typing import Any

from hydra.core.global_hydra import GlobalHydra


def run(module: str, cases: list[list[str]]) -> list[dict[str, Any]]:
    """Run MODULE as `__main__` (as `python -m` does) once per argument list, with its own argv, stdout and stderr."""
    results = []
    for args in cases:
        name, args = (args[0], args[1:]) if module == "-" else (module, args)
        out, err, code = io.StringIO(), io.StringIO(), 0
        sys.argv = [name, *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module(name, run_name="__main__", alter_sys=True)
            except SystemExit as exit_:  # as the interpreter reads it: a number, nothing (0), or a message (1)
                code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
                if not isinstance(exit_.code, (int, type(None))):
                    print(exit_.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 — what the interpreter would print before exiting with status 1
                traceback.print_exc()
                code = 1
        GlobalHydra.instance().clear()
        results.append({"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
    return results


if __name__ == "__main__":
    module_name, out_path = sys.argv[1:3]
    results = run(module_name, json.load(sys.stdin))
    with open(out_path, "w", encoding="utf-8") as file:
        json.dump(results, file)
