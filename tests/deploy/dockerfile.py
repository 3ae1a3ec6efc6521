"""A small reader for deploy/Dockerfile: its instructions, stage by stage."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str
    stage: int  # 0 for the first FROM, 1 for the second, ...


def instructions(path: Path) -> list[Instruction]:
    """Every instruction, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    found: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        found.append(Instruction(keyword, re.sub(r"\s+", " ", arguments.strip()), max(stage, 0)))
    return found


def final_stage(path: Path) -> list[Instruction]:
    every = instructions(path)
    last = max(i.stage for i in every)
    return [i for i in every if i.stage == last]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of CMD/ENTRYPOINT (shell form is not used in this image)."""
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed)
    return parsed
