"""Load a YAML file into pydantic models, with errors that name the key path and the line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigProblem:
    path: str  # "senders[2].proof"
    line: int | None  # 1-based, None when the key is missing altogether
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(top level)'}: {self.message}"


class ConfigError(Exception):
    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(str(p) for p in problems))


def _lines(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    """Record the line of every mapping key and sequence item, keyed by its location."""
    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*loc, str(key.value))
            out[sub] = key.start_mark.line + 1
            _lines(value, sub, out)
            out[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*loc, i), out)


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def parse_yaml(text: str, model: type[M], source: str) -> M:
    """Validate YAML text against `model`; raise ConfigError listing every problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigProblem("", line, f"not valid YAML: {problem}")]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem("", 1, "the file must be a mapping of keys")])
    lines: dict[Loc, int] = {}
    if node is not None:
        _lines(node, (), lines)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # pydantic adds union/validator tags to loc; keep only real keys and indexes
            loc: Loc = tuple(p for p in err["loc"] if isinstance(p, int) or not _is_tag(p))
            line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
            message = err["msg"].removeprefix("Value error, ")
            problems.append(ConfigProblem(_dotted(loc), line, message))
        raise ConfigError(source, problems) from exc


def _is_tag(part: str) -> bool:
    """pydantic puts union members and validators ("function-after[...]", "str") into loc."""
    return "[" in part or "(" in part or part in {"str", "int", "float", "bool", "list", "dict"}


def load_yaml(path: Path, model: type[M]) -> M:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [ConfigProblem("", None, f"cannot read: {exc}")]) from exc
    return parse_yaml(text, model, str(path))
