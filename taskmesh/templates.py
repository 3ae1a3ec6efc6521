"""Templates in job definitions: Jinja2's SandboxedEnvironment with StrictUndefined.

The names a template sees are `params` (the run's merged parameters), `run` (id, attempt,
slot_time, idempotency_key) and `job` (id, name); see worker.executors.base.ExecutionContext.
template_context. A string without "{{", "{%" or "{#" is no template and is used as it is, at
no cost.

Invariants:
- Rendering never touches a file, a shell or the network: no loader, no imports, the sandbox
  refuses unsafe attributes (`__class__`, `mro`, ...). Values are data: what a parameter holds
  is never rendered again, so a parameter cannot inject template code.
- A referenced name that does not exist is an error (StrictUndefined), never an empty string.
- Rendering is bounded: at most MAX_LOOP_ITERATIONS loop iterations in all per render, ranges of
  at most MAX_RANGE, `*`, `**`, replace() and width arguments that would build large values refused, `%` string formatting refused, the
  result at most `max_bytes` (the field's own limit). A bound hit is a TemplateError.
- Errors name the field: "executor.http.url: unexpected '}'".
- Rendered values print as JSON would: true/false/null, integral numbers without ".0",
  objects and arrays as compact JSON (so `{{ params }}` in a body is JSON).

H3 (flow control) renders concurrency and rate-limit keys with `render(source, context, field)`.

A template that is only text and `{{ name.key.key }}` lookups (most keys and URLs) is rendered
without Jinja when every lookup finds plain JSON data, with the same result at a fraction of
the cost (a trigger renders its run's key); anything else, an error included, goes to Jinja.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

MARKERS = ("{{", "{%", "{#")
MAX_SOURCE_BYTES = 1 << 20
MAX_LOOP_ITERATIONS = 10_000
MAX_RANGE = 10_000
MAX_SEQUENCE = 1 << 16  # longest string or list `*`, replace() or a width argument may build
MAX_POWER_BITS = 4096
DEFAULT_MAX_BYTES = 1 << 20
_BUDGET = "__taskmesh_loop_budget"
_BOUNDED = "__taskmesh_bounded"
# Filters that build strings from a width or count argument, unbounded: not offered.
_REMOVED_FILTERS = ("center", "indent", "wordwrap", "format", "filesizeformat", "xmlattr", "urlize")


class TemplateError(Exception):
    """A template that cannot be parsed or rendered; the message starts with the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class _Budget:
    """Loop iterations left for one render."""

    def __init__(self, iterations: int) -> None:
        self.left = iterations

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _Bound(f"more than {MAX_LOOP_ITERATIONS} loop iterations")


class _Bound(Exception):
    """A rendering limit was hit."""


def _bounded(budget: _Budget, iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        budget.spend()
        yield item


def _finalize(value: Any) -> Any:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


class _Environment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            raise _Bound("% string formatting is not offered; use ~ to join strings")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                sized = isinstance(sequence, str | list | tuple) and isinstance(count, int)
                if sized and len(sequence) * max(count, 0) > MAX_SEQUENCE:
                    raise _Bound(f"'*' would build more than {MAX_SEQUENCE} items")
        integers = operator == "**" and isinstance(left, int) and isinstance(right, int)
        if integers and right > 0 and max(abs(left), 2).bit_length() * right > MAX_POWER_BITS:
            raise _Bound(f"'**' would build a number of more than {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, int) and a > MAX_SEQUENCE for a in (*args, *kwargs.values())):
            raise _Bound(f"a call with a number over {MAX_SEQUENCE}")
        if getattr(__obj, "__name__", "") == "replace" and isinstance(getattr(__obj, "__self__", None), str):
            return _replace(__obj.__self__, *args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def _replace(value: str, old: str, new: str, count: int = -1) -> str:
    """str.replace, refused when its result would be longer than MAX_SEQUENCE characters."""
    occurrences = (len(value) + 1 if old == "" else value.count(old)) if count < 0 else count
    if len(value) + occurrences * max(len(new) - len(old), 0) > MAX_SEQUENCE:
        raise _Bound(f"replace() would build more than {MAX_SEQUENCE} characters")
    return value.replace(old, new, count)


def _environment() -> _Environment:
    env = _Environment(undefined=StrictUndefined, autoescape=False, finalize=_finalize, auto_reload=False)
    for name in _REMOVED_FILTERS:
        env.filters.pop(name, None)
    env.filters["replace"] = lambda value, old, new, count=None: _replace(
        str(value), str(old), str(new), -1 if count is None else int(count)
    )
    env.globals["range"] = _range
    env.globals[_BOUNDED] = _bounded
    return env


def _range(*args: int) -> range:
    values = range(*args)
    if len(values) > MAX_RANGE:
        raise _Bound(f"range() of more than {MAX_RANGE} items")
    return values


_ENV = _environment()


def is_template(source: str) -> bool:
    return any(marker in source for marker in MARKERS)


def check(source: str, field: str) -> None:
    """Raise TemplateError (naming `field`) unless `source` is plain text or a template that parses."""
    if is_template(source):
        _compiled(source, field)


def render(source: str, context: Mapping[str, Any], field: str, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """`source` rendered over `context`; plain text comes back as it is."""
    if not is_template(source):
        return source
    compiled = _compiled(source, field)
    if compiled.lookups is not None:
        text = _looked_up(compiled.lookups, context)
        if text is not None and len(text.encode()) <= max_bytes:
            return text
    return _render_jinja(compiled.template, context, field, max_bytes)


def _render_jinja(template: Any, context: Mapping[str, Any], field: str, max_bytes: int) -> str:
    budget = _Budget(MAX_LOOP_ITERATIONS)
    parts: list[str] = []
    size = 0
    try:
        for part in template.generate({**context, _BUDGET: budget}):
            size += len(part)
            if size > max_bytes // 4 and sum(len(p.encode()) for p in parts) + len(part.encode()) > max_bytes:
                raise _Bound(f"renders to more than {max_bytes} bytes")
            parts.append(part)
    except _Bound as bound:
        raise TemplateError(field, str(bound)) from None
    except JinjaTemplateError as error:
        raise TemplateError(field, error.message or error.__class__.__name__) from None
    except RecursionError:
        raise TemplateError(field, "recursion too deep") from None
    except Exception as error:  # a template's own error (1/0, int('x'), a refused call)
        raise TemplateError(field, f"{error.__class__.__name__}: {error}") from None
    return "".join(parts)


# A template as text and lookup paths ("{{ run.id }}" is ("run", "id")).
Lookups = tuple[str | tuple[str, ...], ...]


@dataclass(frozen=True)
class _Compiled:
    template: Any  # the Jinja template
    lookups: Lookups | None  # the same template, when it is only text and lookups


def _lookups(tree: nodes.Template) -> Lookups | None:
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts: list[str | tuple[str, ...]] = []
    for node in tree.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            parts.append(node.data)
            continue
        path: list[str] = []
        while isinstance(node, nodes.Getattr):
            path.append(node.attr)
            node = node.node
        if not isinstance(node, nodes.Name) or node.name.startswith("_"):
            return None
        parts.append((node.name, *reversed(path)))
    return tuple(parts)


def _looked_up(lookups: Lookups, context: Mapping[str, Any]) -> str | None:
    """The text of a lookups-only template, or None where Jinja must decide (a missing name, a
    name that is a dict method as well as a key, a value that is not plain JSON data)."""
    out: list[str] = []
    for part in lookups:
        if isinstance(part, str):
            out.append(part)
            continue
        if part[0] not in context:
            return None
        value = context[part[0]]
        for key in part[1:]:
            if not isinstance(value, dict) or key not in value or hasattr(value, key):
                return None
            value = value[key]
        shown = _finalize(value)
        if not isinstance(shown, str | int | float):
            return None
        out.append(str(shown))
    return "".join(out)


def _compiled(source: str, field: str) -> _Compiled:
    try:
        return _compile(source)
    except TemplateSyntaxError as error:
        raise TemplateError(field, error.message or "syntax error") from None
    except JinjaTemplateError as error:
        raise TemplateError(field, error.message or error.__class__.__name__) from None


@lru_cache(maxsize=4096)
def _compile(source: str) -> _Compiled:
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise TemplateSyntaxError(f"a template is at most {MAX_SOURCE_BYTES} bytes", 1)
    tree = _ENV.parse(source)
    for loop in tree.find_all(nodes.For):  # every loop draws on the render's budget
        loop.iter = nodes.Call(
            nodes.Name(_BOUNDED, "load"), [nodes.Name(_BUDGET, "load"), loop.iter], [], None, None
        )
    return _Compiled(_ENV.from_string(tree), _lookups(tree))
