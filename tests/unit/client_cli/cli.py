"""Run the CLI's main() in-process and capture what it prints."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

from taskmesh.cli.main import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The one line an error prints (asserting it is one line, and no traceback)."""
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("error: ") and "Traceback" not in self.err
        return lines[0]


def run(args: list[str], env: Mapping[str, str], stdin: str = "") -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = main(args, env=dict(env), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return Result(code, out.getvalue(), err.getvalue())
