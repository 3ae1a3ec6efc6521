"""taskmesh.templates: the sandbox, strictness, JSON-like printing and the bounds."""

import pytest

from taskmesh import templates
from taskmesh.templates import TemplateError

CONTEXT = {
    "params": {
        "customer_id": 42,
        "ratio": 0.5,
        "flag": True,
        "none": None,
        "tags": ["a", "b"],
        "evil": "{{ run.id }}",
    },
    "run": {"id": "r-1", "attempt": 2, "slot_time": None},
    "job": {"id": "j-1", "name": "reports"},
}


def render(source: str, max_bytes: int = 1 << 20) -> str:
    return templates.render(source, CONTEXT, "executor.http.url", max_bytes)


def test_plain_text_is_no_template_and_comes_back_as_it_is() -> None:
    assert not templates.is_template("https://api.example.com/{id}")
    assert render("https://api.example.com/{id}") == "https://api.example.com/{id}"


def test_parameters_and_built_ins_render_as_json_spells_them() -> None:
    assert (
        render("/c/{{ params.customer_id }}/{{ run.id }}/{{ run.attempt }}/{{ job.name }}")
        == "/c/42/r-1/2/reports"
    )
    assert (
        render("{{ params.flag }} {{ params.none }} {{ params.ratio }} {{ params.tags }}")
        == 'true null 0.5 ["a","b"]'
    )
    assert render("{{ params | tojson }}").startswith('{"customer_id": 42')


def test_a_parameter_holding_template_code_is_data() -> None:
    assert render("{{ params.evil }}") == "{{ run.id }}"


def test_an_unknown_name_is_an_error_naming_the_field() -> None:
    with pytest.raises(TemplateError, match=r"^executor.http.url: 'dict object' has no attribute 'nope'"):
        render("{{ params.nope }}")
    with pytest.raises(TemplateError, match="'secret' is undefined"):
        render("{{ secret }}")


def test_a_syntax_error_names_the_field() -> None:
    with pytest.raises(TemplateError, match=r"^executor.http.url: unexpected '}'"):
        templates.check("{{ params.x }", "executor.http.url")
    templates.check("{{ params.x }}", "executor.http.url")  # syntax only: the name is checked late


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ params.__class__ }}",
    ],
)
def test_the_sandbox_refuses_unsafe_attributes(source: str) -> None:
    with pytest.raises(TemplateError):
        render(source)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{% for i in range(200) %}{% for j in range(200) %}{% endfor %}{% endfor %}", "loop iterations"),
        ("{{ range(20000) | list }}", "range"),
        ("{{ 'a' * 100000000 }}", "'\\*' would build"),
        ("{{ 10 ** 100000 }}", "'\\*\\*' would build"),
        ("{{ '%0100000000d' % 1 }}", "% string formatting"),
        ("{{ 'x'.ljust(100000000) }}", "a call with a number"),
        ("{{ ('a' * 60000) | replace('a', 'aaaa') }}", "replace"),
        ("{{ 'x' | center(100000000) }}", "No filter named 'center'"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion|loop"),
    ],
)
def test_rendering_is_bounded(source: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=problem):
        render(source)


def test_the_result_is_bounded_by_the_fields_limit() -> None:
    assert render("{{ 'a' * 100 }}", max_bytes=100) == "a" * 100
    with pytest.raises(TemplateError, match="renders to more than 100 bytes"):
        render("{{ 'a' * 101 }}", max_bytes=100)


LOOKUP_ONLY = [
    "u-{{ run.id }}",
    "c-{{ params.customer_id }}-{{ job.name }}",
    "{{ params.ratio }}/{{ params.flag }}/{{ params.none }}/{{ params.tags }}",
    "{{ params }}",
    "{{ params.evil }}",
    "{{ run.slot_time }}",
    "x{{ params.items }}",  # a dict method before a key, as Jinja resolves it
    "{{ params.missing }}",
    "{{ nobody.there }}",
    "{{ params.customer_id.deeper }}",
    "{{ params.tags }}" * 3000,  # over max_bytes
]


@pytest.mark.parametrize("source", LOOKUP_ONLY, ids=range(len(LOOKUP_ONLY)))
def test_a_lookups_only_template_renders_as_jinja_renders_it(source: str) -> None:
    compiled = templates._compile(source)
    assert compiled.lookups is not None  # it takes the path without Jinja where it can
    try:
        expected: str | TemplateError = templates._render_jinja(compiled.template, CONTEXT, "f", 1 << 14)
    except TemplateError as error:
        expected = error
    try:
        got: str | TemplateError = templates.render(source, CONTEXT, "f", 1 << 14)
    except TemplateError as error:
        got = error
    assert str(got) == str(expected) and type(got) is type(expected)


def test_templates_with_more_than_lookups_go_to_jinja() -> None:
    for source in ("{{ params.customer_id + 1 }}", "{{ params['customer_id'] }}", "{% if true %}x{% endif %}"):
        assert templates._compile(source).lookups is None
    assert templates._compile("{{ params.customer_id }}").lookups == (("params", "customer_id"),)
