"""Tests for theater_py._template: rendering manifests over their init state."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theater_py._template import Where, compile_template
from theater_py.errors import ManifestError
from theater_py.manifest import EnvironmentHandler, HttpClientHandler, load_manifest, parse_manifest

HEAD = 'name = "demo"\nversion = "0.1.0"\ncomponent = "tests.sample_actors:Echo"\n'
INJECTION = '"]\n[[handler]]\ntype = "http-client"'


def render(text: str, state: Any) -> str:
    """Render a template under the source name "m.toml"."""
    return compile_template(text, "m.toml").render(state, "m.toml")


def render_error(text: str, state: Any) -> ManifestError:
    """Return the ManifestError rendering this template raises."""
    with pytest.raises(ManifestError) as info:
        render(text, state)
    return info.value


# --- placeholders ----------------------------------------------------------------


def test_path_renders_inside_a_string() -> None:
    assert render('k = "{{config.model}}"', {"config": {"model": "gpt-4o"}}) == 'k = "gpt-4o"'


def test_whitespace_inside_the_braces_is_tolerated() -> None:
    assert render('k = "{{ \tconfig.model  }}"', {"config": {"model": "m"}}) == 'k = "m"'


def test_several_placeholders_on_a_line() -> None:
    state = {"scheme": "https", "host": "h", "port": 443}

    assert render('u = "{{scheme}}://{{host}}:{{port}}"', state) == 'u = "https://h:443"'


@pytest.mark.parametrize("path", ["servers.[1].host", "servers.1.host"])
def test_array_items_are_reached_by_index(path: str) -> None:
    state = {"servers": [{"host": "a"}, {"host": "b"}]}

    assert render(f'h = "{{{{{path}}}}}"', state) == 'h = "b"'


def test_bracketed_segment_may_hold_a_dot() -> None:
    assert render('v = "{{[a.b].c}}"', {"a.b": {"c": "x"}}) == 'v = "x"'


@pytest.mark.parametrize(
    "state",
    [{}, {"config": {}}, {"config": {"api_key_env": None}}, {"config": {"api_key_env": ""}}, None],
)
def test_default_helper_fills_in_missing_null_or_empty(state: Any) -> None:
    text = 'v = "{{default config.api_key_env "OPENAI_API_KEY"}}"'

    assert render(text, state) == 'v = "OPENAI_API_KEY"'


def test_default_helper_yields_to_a_present_value() -> None:
    text = 'v = "{{ default config.api_key_env "OPENAI_API_KEY" }}"'

    assert render(text, {"config": {"api_key_env": "MOONSHOT_API_KEY"}}) == 'v = "MOONSHOT_API_KEY"'


def test_default_helper_takes_typed_fallbacks() -> None:
    text = "a = {{default x 5}}\nb = {{default y true}}\nc = {{default z -1.5e3}}"

    assert tomllib.loads(render(text, {})) == {"a": 5, "b": True, "c": -1500.0}


def test_default_string_may_hold_escapes_and_braces() -> None:
    parsed = tomllib.loads(render('v = "{{default x "a\\"}}b"}}"', {}))

    assert parsed == {"v": 'a"}}b'}


def test_default_string_may_be_quoted_as_toml_escapes_it() -> None:
    # Inside a basic string, authors write the quotes as TOML would: \"...\".
    text = 'v = ["{{default config.api_key_env \\"OPENAI_API_KEY\\"}}"]'

    assert tomllib.loads(render(text, {})) == {"v": ["OPENAI_API_KEY"]}


def test_missing_path_names_placeholder_and_line() -> None:
    error = render_error('a = 1\nb = 2\nk = "{{ config.api_key_env }}"\n', {"config": {}})

    assert (error.file, error.field) == ("m.toml", "{{ config.api_key_env }}")
    assert "line 3" in str(error)
    assert "config.api_key_env is missing" in str(error)


@pytest.mark.parametrize("state", [None, {"x": None}, {"x": {"y": 1}}, ["x"], "x"])
def test_unresolvable_path_without_default_is_an_error(state: Any) -> None:
    error = render_error('k = "{{x.y.z}}"', state)

    assert error.field == "{{x.y.z}}"


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ('k = "{{#if x}}"', "{{#if x}}", "malformed placeholder"),
        ('k = "{{x y}}"', "{{x y}}", "unknown helper 'x'"),
        ('k = "{{upper x}}"', "{{upper x}}", "unknown helper 'upper'"),
        ('k = "{{x "d"}}"', '{{x "d"}}', "needs the helper"),
        ('k = "{{default x}}"', "{{default x}}", "the helper needs a fallback"),
        ('k = "{{x"\nj = "}}"', '{{x"', "unclosed placeholder"),
        ('k = "{{x', "{{x", "unclosed placeholder"),
    ],
)
def test_malformed_placeholder_is_named(text: str, field: str, expected: str) -> None:
    with pytest.raises(ManifestError) as info:
        compile_template(text, "m.toml")

    assert (info.value.file, info.value.field) == ("m.toml", field)
    assert expected in str(info.value)
    assert "line 1" in str(info.value)


# --- where a placeholder stands ---------------------------------------------------------


def where_of(text: str) -> list[Where]:
    """Return where each placeholder of the text stands."""
    return [
        part.where for part in compile_template(text, "m.toml").parts if not isinstance(part, str)
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a = {{v}}", [Where.BARE]),
        ('a = "{{v}}"', [Where.BASIC]),
        ("a = '{{v}}'", [Where.LITERAL]),
        ('a = """\nx {{v}}\n"""', [Where.BASIC]),
        ("a = '''\nx {{v}}\n'''", [Where.LITERAL]),
        ('a = "x # \\" {{v}}"', [Where.BASIC]),  # neither # nor an escaped quote ends it
        ('a = "x\\\\"\nb = {{v}}', [Where.BARE]),  # an escaped backslash does not escape "
        ("a = 'x\\'\nb = {{v}}", [Where.BARE]),  # no escapes in literal strings
        ('a = ["""x"""", {{v}}]', [Where.BARE]),  # a quote just before the delimiter
        ('a = ""\nb = "{{v}}"', [Where.BASIC]),
        ("a = ['{{v}}', \"{{v}}\", {{v}}]", [Where.LITERAL, Where.BASIC, Where.BARE]),
        ('a = "{{default v "x"}}" # {{v}}\nb = {{v}}', [Where.BASIC, Where.BARE]),
    ],
)
def test_lexer_finds_where_each_placeholder_stands(text: str, where: list[Where]) -> None:
    assert where_of(text) == where


def test_placeholders_in_comments_are_left_alone() -> None:
    text = '# uses {{missing}} and {{#weird}}\na = 1 # {{ also.missing }}\nb = "{{v}}"'

    assert render(text, {"v": "x"}) == text.replace('"{{v}}"', '"x"')


@pytest.mark.parametrize(
    ("value", "toml"),
    [
        ("s", '"s"'),
        ('q"\\', '"q\\"\\\\"'),
        (7, "7"),
        (-2, "-2"),
        (True, "true"),
        (False, "false"),
        (1.5, "1.5"),
        (1e300, "1e+300"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
    ],
)
def test_outside_a_string_a_scalar_renders_as_its_toml_literal(value: Any, toml: str) -> None:
    assert render("a = {{v}}", {"v": value}) == f"a = {toml}"


def test_nan_renders_as_toml_nan() -> None:
    assert render("a = {{v}}", {"v": float("nan")}) == "a = nan"


@pytest.mark.parametrize("value", [{"k": 1}, [1, 2]])
@pytest.mark.parametrize("text", ["a = {{v}}", 'a = "{{v}}"', "a = '{{v}}'"])
def test_a_table_or_array_value_is_an_error(text: str, value: Any) -> None:
    error = render_error(text, {"v": value})

    assert error.field == "{{v}}"
    assert "not a string, number or boolean" in str(error)


def test_inside_a_string_scalars_render_as_text() -> None:
    text = 'a = "{{s}}-{{i}}-{{b}}-{{f}}"'

    assert render(text, {"s": "x", "i": 3, "b": False, "f": 0.5}) == 'a = "x-3-false-0.5"'


def test_a_safe_value_renders_inside_a_literal_string() -> None:
    assert tomllib.loads(render("a = '{{v}}'", {"v": 'C:\\dir "x"'})) == {"a": 'C:\\dir "x"'}


@pytest.mark.parametrize("value", ["it's", "two\nlines", "nul\x00"])
def test_a_value_a_literal_string_cannot_hold_is_an_error(value: str) -> None:
    error = render_error("a = '{{v}}'", {"v": value})

    assert error.field == "{{v}}"
    assert "literal string" in str(error)
    assert value not in str(error)


def test_rendered_values_never_add_lines() -> None:
    rendered = render('a = "{{v}}"\nb = {{v}}', {"v": "x\ny\r\nz"})

    assert rendered.count("\n") == 1


# --- escaping: no init data can inject TOML ----------------------------------------------


@given(st.text())
def test_any_string_round_trips_in_a_basic_string(value: str) -> None:
    assert tomllib.loads(render('a = "{{v}}"\nz = 1', {"v": value})) == {"a": value, "z": 1}


@given(st.text())
def test_any_string_round_trips_in_a_multi_line_basic_string(value: str) -> None:
    text = 'a = """{{v}}"""\nz = 1'

    assert tomllib.loads(render(text, {"v": value})) == {"a": value, "z": 1}


@given(st.text())
def test_any_string_round_trips_outside_a_string(value: str) -> None:
    assert tomllib.loads(render("a = [{{v}}]\nz = 1", {"v": value})) == {"a": [value], "z": 1}


@given(st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False)))
def test_any_json_scalar_round_trips_outside_a_string(value: Any) -> None:
    assert tomllib.loads(render("a = {{v}}", {"v": value})) == {"a": value}


@given(st.text())
def test_any_string_granted_as_a_variable_is_exactly_that_variable(value: str) -> None:
    text = HEAD + '[[handler]]\ntype = "environment"\nallowed_vars = ["{{config.var}}"]\n'

    manifest = parse_manifest(text, init={"config": {"var": value}}).manifest

    assert manifest.handlers == (EnvironmentHandler(allowed_vars=(value,)),)


@pytest.mark.parametrize(
    "line",
    [
        'allowed_vars = ["{{v}}"]',
        'allowed_vars = ["""{{v}}"""]',
        "allowed_vars = [{{v}}]",
        "allowed_vars = ['{{default w \"A\"}}'] # {{v}}",
    ],
)
def test_injected_handler_tables_stay_inside_the_value(line: str) -> None:
    text = HEAD + f'[[handler]]\ntype = "environment"\n{line}\n'

    manifest = parse_manifest(text, init={"v": INJECTION}).manifest

    assert len(manifest.handlers) == 1
    assert not manifest.grants(HttpClientHandler.type_name)


def test_injection_into_a_literal_string_is_refused() -> None:
    text = HEAD + "[[handler]]\ntype = \"environment\"\nallowed_vars = ['{{v}}']\n"

    with pytest.raises(ManifestError) as info:
        parse_manifest(text, init={"v": "A']\n[[handler]]\ntype = 'http-client"})

    assert info.value.field == "{{v}}"


# --- rendering whole manifests ----------------------------------------------------


PROXY = (
    'name = "openai-proxy"\nversion = "0.1.0"\n'
    'component = "theater_py_actors.openai_proxy:OpenAIProxyActor"\n'
    "INIT_STATE"
    '[[handler]]\ntype = "message-server"\n\n'
    '[[handler]]\ntype = "http-client"\n\n'
    '[[handler]]\ntype = "environment"\n'
    'allowed_vars = ["{{default config.api_key_env \\"OPENAI_API_KEY\\"}}"]\n'
)


def test_proxy_grants_exactly_the_variable_its_init_names() -> None:
    text = PROXY.replace("INIT_STATE", "")

    default = parse_manifest(text).manifest.handler("environment")
    moonshot = parse_manifest(text, init={"config": {"api_key_env": "MOONSHOT_API_KEY"}})
    chosen = moonshot.manifest.handler("environment")

    assert isinstance(default, EnvironmentHandler)
    assert isinstance(chosen, EnvironmentHandler)
    assert default.permits("OPENAI_API_KEY")
    assert not default.permits("MOONSHOT_API_KEY")
    assert chosen.permits("MOONSHOT_API_KEY")
    assert not chosen.permits("OPENAI_API_KEY")


def test_rendering_uses_the_merged_state(tmp_path: Path) -> None:
    (tmp_path / "init.json").write_text(
        json.dumps({"config": {"api_key_env": "FROM_FILE"}, "store_id": "s"}), encoding="utf-8"
    )
    path = tmp_path / "manifest.toml"
    path.write_text(PROXY.replace("INIT_STATE", 'init_state = "init.json"\n'), encoding="utf-8")

    from_file = load_manifest(path)
    overridden = load_manifest(path, {"config": {"api_key_env": "FROM_INIT"}})

    assert from_file.manifest.handler("environment") == EnvironmentHandler(
        allowed_vars=("FROM_FILE",)
    )
    assert overridden.manifest.handler("environment") == EnvironmentHandler(
        allowed_vars=("FROM_INIT",)
    )
    assert overridden.state == {"config": {"api_key_env": "FROM_INIT"}, "store_id": "s"}


def test_bare_placeholders_do_not_hide_init_state(tmp_path: Path) -> None:
    # The raw text is not TOML until rendered; init_state must still be found.
    (tmp_path / "init.json").write_text('{"chain": true, "ms": 50}', encoding="utf-8")
    text = (
        HEAD + 'init_state = "init.json"\nsave_chain = {{chain}}\n'
        '[[handler]]\ntype = "timing"\nmax_sleep_duration = {{ms}}\n'
    )

    loaded = parse_manifest(text, base_dir=tmp_path)

    assert loaded.manifest.save_chain is True
    assert loaded.manifest.handler("timing") is not None
    assert loaded.manifest.init_state == tmp_path / "init.json"


def test_rendered_value_of_the_wrong_type_names_the_field() -> None:
    text = HEAD + '[[handler]]\ntype = "timing"\nmax_sleep_duration = {{ms}}\n'

    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="m.toml", init={"ms": "soon"})

    assert (info.value.file, info.value.field) == ("m.toml", "handler[0].max_sleep_duration")


@pytest.mark.parametrize(
    "line", ['init_state = "{{file}}"', "init_state = {{file}}", "init_state = 'x{{file}}'"]
)
def test_init_state_cannot_hold_a_placeholder(line: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(HEAD + line + "\n", source="m.toml", init={"file": "x.json"})

    assert (info.value.file, info.value.field) == ("m.toml", "init_state")
    assert "placeholder" in str(info.value)


def test_init_state_cannot_be_written_by_a_placeholder_key() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(HEAD + '{{key}} = "x.json"\n', init={"key": "init_state"})

    assert info.value.field == "init_state"


def test_toml_errors_after_rendering_keep_their_line() -> None:
    text = HEAD + 'a = "{{v}}"\nb = {{v}}{{v}}\n'

    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="m.toml", init={"v": "x\ny"})

    assert info.value.file == "m.toml"
    assert "line 5" in str(info.value)
    assert "x\ny" not in str(info.value)


def test_missing_placeholder_in_a_manifest_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "manifest.toml"
    path.write_text(HEAD + 'description = "{{about}}"\n', encoding="utf-8")

    with pytest.raises(ManifestError) as info:
        load_manifest(path)

    assert (info.value.file, info.value.field) == (str(path), "{{about}}")
    assert "line 4" in str(info.value)
