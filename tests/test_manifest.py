"""Tests for theater_py.manifest: the format, handlers, init state and loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from theater_py.errors import ManifestError, TheaterError
from theater_py.manifest import (
    HANDLER_TYPES,
    EnvironmentHandler,
    FilesystemHandler,
    HttpClientHandler,
    LoadedManifest,
    Manifest,
    MessageServerHandler,
    ProcessHandler,
    RandomHandler,
    RuntimeHandler,
    StoreHandler,
    SupervisorHandler,
    TimingHandler,
    load_manifest,
    merge_init_state,
    parse_init_data,
    parse_manifest,
)

HEAD = 'name = "demo"\nversion = "0.1.0"\ncomponent = "tests.sample_actors:Echo"\n'


def parse(text: str, **kwargs: Any) -> Manifest:
    """Parse manifest text under the source name "m.toml" and return the manifest."""
    return parse_manifest(text, source="m.toml", **kwargs).manifest


def error_of(text: str, **kwargs: Any) -> ManifestError:
    """Return the ManifestError parsing this text raises."""
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="m.toml", **kwargs)
    return info.value


# --- top level -------------------------------------------------------------------


def test_minimal_manifest_has_theater_defaults() -> None:
    manifest = parse(HEAD)

    assert manifest == Manifest(name="demo", version="0.1.0", component="tests.sample_actors:Echo")
    assert manifest.description is None
    assert manifest.init_state is None
    assert manifest.save_chain is False
    assert manifest.handlers == ()
    assert manifest.path is None


def test_optional_top_level_keys_are_read() -> None:
    manifest = parse(HEAD + 'description = "short"\nlong_description = "long"\nsave_chain = true\n')

    assert (manifest.description, manifest.long_description) == ("short", "long")
    assert manifest.save_chain is True


@pytest.mark.parametrize("key", ["name", "version", "component"])
def test_missing_required_key_is_named(key: str) -> None:
    text = "\n".join(line for line in HEAD.splitlines() if not line.startswith(key))

    error = error_of(text)

    assert (error.file, error.field) == ("m.toml", key)
    assert "missing" in str(error)


def test_unknown_top_level_key_is_named() -> None:
    error = error_of(HEAD + "colour = 1\n")

    assert (error.file, error.field) == ("m.toml", "colour")
    assert "'colour'" in str(error)


def test_a_misspelt_key_suggests_the_closest_valid_key_first() -> None:
    error = error_of(HEAD + "save_chian = true\n")

    assert error.field == "save_chian"
    assert "did you mean 'save_chain'? expected one of save_chain, name, version" in str(error)


REPO = Path(__file__).resolve().parents[1]


def test_a_system_manifest_given_as_an_actors_says_which_command_takes_it() -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(REPO / "manifests" / "system.toml")

    message = str(info.value)
    assert "this is a system manifest" in message
    assert "theater-py run FILE" in message
    assert "unknown key" not in message


def test_the_shipped_proxy_manifest_keeps_its_chain_on_disk() -> None:
    """So that `theater-py events openai-proxy` still reads after a stop (docs/openai-proxy.md)."""
    loaded = load_manifest(REPO / "manifests" / "openai-proxy.toml")

    assert loaded.manifest.save_chain is True
    guide = (REPO / "docs" / "openai-proxy.md").read_text(encoding="utf-8")
    assert "save_chain = true" in guide and "events.sqlite3" in guide


def test_an_actors_manifest_given_as_a_system_says_which_command_takes_it() -> None:
    from theater_py.system import load_system

    with pytest.raises(ManifestError) as info:
        load_system(REPO / "manifests" / "openai-proxy.toml")

    message = str(info.value)
    assert "this is an actor's manifest" in message
    assert "theater-py start FILE" in message
    assert "unknown key" not in message


@pytest.mark.parametrize(
    ("line", "field", "expected"),
    [
        ("save_chain = 1", "save_chain", "expected a boolean, got an integer"),
        ('save_chain = "true"', "save_chain", "expected a boolean, got a string"),
        ("description = 2", "description", "expected a string, got an integer"),
        ("init_state = []", "init_state", "expected a string, got an array"),
    ],
)
def test_wrong_top_level_type_is_named(line: str, field: str, expected: str) -> None:
    error = error_of(HEAD + line + "\n")

    assert (error.file, error.field) == ("m.toml", field)
    assert expected in str(error)


def test_wrong_type_of_required_key_is_named() -> None:
    error = error_of('name = "a"\nversion = 1\ncomponent = "a:B"\n')

    assert error.field == "version"
    assert "expected a string, got an integer" in str(error)


def test_empty_name_is_refused() -> None:
    error = error_of('name = ""\nversion = "1"\ncomponent = "a:B"\n')

    assert error.field == "name"


@pytest.mark.parametrize(
    "component", ["theater_py_actors.openai_proxy:OpenAIProxyActor", "mod:Cls", "a.b.c:_Private"]
)
def test_component_in_package_module_class_shape_is_accepted(component: str) -> None:
    assert parse(f'name = "a"\nversion = "1"\ncomponent = "{component}"\n').component == component


@pytest.mark.parametrize(
    "component",
    ["actor.wasm", "mod.Cls", "mod:", ":Cls", "mod:Cls.Inner", "a..b:C", "my-mod:C", "a:B:C", ""],
)
def test_component_of_another_shape_is_refused(component: str) -> None:
    error = error_of(f'name = "a"\nversion = "1"\ncomponent = "{component}"\n')

    assert (error.file, error.field) == ("m.toml", "component")
    assert "package.module:ClassName" in str(error)


def test_toml_syntax_error_names_file_and_position() -> None:
    error = error_of(HEAD + "[[handler]\n")

    assert error.file == "m.toml"
    assert error.field is None
    assert "invalid TOML" in str(error)
    assert "line 4" in str(error)
    assert "column" in str(error)


def test_manifest_error_is_a_theater_error_and_a_value_error() -> None:
    error = error_of(HEAD + "x = 1\n")

    assert isinstance(error, TheaterError)
    assert isinstance(error, ValueError)


# --- handlers --------------------------------------------------------------------


def test_flat_and_legacy_handler_forms_read_the_same() -> None:
    flat = parse(
        HEAD
        + '[[handler]]\ntype = "message-server"\n\n'
        + '[[handler]]\ntype = "environment"\nallowed_vars = ["A", "B"]\n\n'
        + '[[handler]]\ntype = "timing"\nmax_sleep_duration = 10\n'
    )
    legacy = parse(
        HEAD
        + '[[handlers]]\ntype = "message-server"\nconfig = {}\n\n'
        + '[[handlers]]\ntype = "environment"\nconfig = { allowed_vars = ["A", "B"] }\n\n'
        + '[[handlers]]\ntype = "timing"\n[handlers.config]\nmax_sleep_duration = 10\n'
    )

    assert flat.handlers == legacy.handlers
    assert flat.handlers == (
        MessageServerHandler(),
        EnvironmentHandler(allowed_vars=("A", "B")),
        TimingHandler(max_sleep_duration=10),
    )


def test_legacy_handler_without_config_takes_defaults() -> None:
    assert parse(HEAD + '[[handlers]]\ntype = "random"\n').handlers == (RandomHandler(),)


def test_both_handler_forms_at_once_are_refused() -> None:
    error = error_of(HEAD + '[[handler]]\ntype = "runtime"\n[[handlers]]\ntype = "store"\n')

    assert (error.file, error.field) == ("m.toml", "handlers")
    assert "not both" in str(error)


@pytest.mark.parametrize(
    ("tables", "field"),
    [
        ('[[handler]]\nallowed_vars = ["A"]\n', "handler[0].type"),
        ('[[handler]]\ntype = "runtime"\n[[handler]]\n', "handler[1].type"),
        ("[[handlers]]\nconfig = {}\n", "handlers[0].type"),
    ],
)
def test_handler_without_type_is_refused(tables: str, field: str) -> None:
    error = error_of(HEAD + tables)

    assert (error.file, error.field) == ("m.toml", field)
    assert "needs a type" in str(error)


def test_unknown_handler_type_is_named() -> None:
    error = error_of(HEAD + '[[handler]]\ntype = "teleport"\n')

    assert (error.file, error.field) == ("m.toml", "handler[0].type")
    assert "'teleport'" in str(error)
    assert "http-client" in str(error)  # the known types are listed


def test_handler_type_must_be_a_string() -> None:
    error = error_of(HEAD + "[[handler]]\ntype = 3\n")

    assert error.field == "handler[0].type"


@pytest.mark.parametrize(
    ("line", "field"),
    [("handler = 1", "handler"), ('handler = ["x"]', "handler"), ("handlers = {}", "handlers")],
)
def test_handlers_must_be_arrays_of_tables(line: str, field: str) -> None:
    error = error_of(HEAD + line + "\n")

    assert (error.file, error.field) == ("m.toml", field)
    assert "array of tables" in str(error)


def test_legacy_handler_with_keys_beside_type_is_refused() -> None:
    error = error_of(HEAD + '[[handlers]]\ntype = "environment"\nallowed_vars = ["A"]\n')

    assert error.field == "handlers[0].allowed_vars"


def test_legacy_handler_config_must_be_a_table() -> None:
    error = error_of(HEAD + '[[handlers]]\ntype = "environment"\nconfig = "A"\n')

    assert error.field == "handlers[0].config"
    assert "expected a table, got a string" in str(error)


def test_flat_handler_with_a_config_table_is_refused() -> None:
    error = error_of(HEAD + '[[handler]]\ntype = "timing"\nconfig = { min_sleep_duration = 5 }\n')

    assert error.field == "handler[0].config"


HANDLER_DEFAULTS = {
    "message-server": (MessageServerHandler, {}),
    "runtime": (RuntimeHandler, {}),
    "supervisor": (SupervisorHandler, {}),
    "http-client": (HttpClientHandler, {}),
    "store": (StoreHandler, {}),
    "environment": (
        EnvironmentHandler,
        {
            "allowed_vars": None,
            "denied_vars": None,
            "allowed_prefixes": None,
            "allow_list_all": False,
        },
    ),
    "timing": (TimingHandler, {"max_sleep_duration": 3_600_000, "min_sleep_duration": 1}),
    "filesystem": (FilesystemHandler, {"path": None, "new_dir": None, "allowed_commands": None}),
    "process": (
        ProcessHandler,
        {
            "max_processes": 10,
            "max_output_buffer": 1_048_576,
            "allowed_programs": None,
            "allowed_paths": None,
        },
    ),
    "random": (
        RandomHandler,
        {"seed": None, "max_bytes": 1_048_576, "max_int": None, "allow_crypto_secure": False},
    ),
}


def test_registry_holds_every_handler_type() -> None:
    assert {name: cls for name, (cls, _) in HANDLER_DEFAULTS.items()} == HANDLER_TYPES


@pytest.mark.parametrize("type_name", sorted(HANDLER_DEFAULTS))
def test_handler_defaults_follow_theater(type_name: str) -> None:
    cls, defaults = HANDLER_DEFAULTS[type_name]

    (handler,) = parse(HEAD + f'[[handler]]\ntype = "{type_name}"\n').handlers

    assert type(handler) is cls
    assert handler.type_name == type_name
    assert attrs.asdict(handler) == defaults


@pytest.mark.parametrize(
    ("type_name", "keys", "expected"),
    [
        (
            "environment",
            'allowed_vars = ["A"]\ndenied_vars = ["B"]\nallowed_prefixes = ["APP_"]\n'
            "allow_list_all = true",
            {
                "allowed_vars": ("A",),
                "denied_vars": ("B",),
                "allowed_prefixes": ("APP_",),
                "allow_list_all": True,
            },
        ),
        (
            "timing",
            "max_sleep_duration = 500\nmin_sleep_duration = 0",
            {"max_sleep_duration": 500, "min_sleep_duration": 0},
        ),
        (
            "filesystem",
            'path = "data"\nnew_dir = true\nallowed_commands = ["ls"]',
            {"path": "data", "new_dir": True, "allowed_commands": ("ls",)},
        ),
        (
            "process",
            'max_processes = 2\nmax_output_buffer = 64\nallowed_programs = ["git"]\n'
            'allowed_paths = ["/tmp"]',
            {
                "max_processes": 2,
                "max_output_buffer": 64,
                "allowed_programs": ("git",),
                "allowed_paths": ("/tmp",),
            },
        ),
        (
            "random",
            "seed = 42\nmax_bytes = 16\nmax_int = 100\nallow_crypto_secure = true",
            {"seed": 42, "max_bytes": 16, "max_int": 100, "allow_crypto_secure": True},
        ),
    ],
)
def test_handler_keys_are_read(type_name: str, keys: str, expected: dict[str, Any]) -> None:
    (handler,) = parse(HEAD + f'[[handler]]\ntype = "{type_name}"\n{keys}\n').handlers

    assert attrs.asdict(handler) == expected


@pytest.mark.parametrize("type_name", sorted(HANDLER_DEFAULTS))
def test_unknown_handler_key_is_named(type_name: str) -> None:
    error = error_of(
        HEAD + f'[[handler]]\ntype = "runtime"\n[[handler]]\ntype = "{type_name}"\nbogus = 1\n'
    )

    assert (error.file, error.field) == ("m.toml", "handler[1].bogus")
    assert "'bogus'" in str(error)


def test_several_unknown_keys_are_all_listed() -> None:
    error = error_of(HEAD + '[[handler]]\ntype = "timing"\nmax_sleep = 1\nmin_sleep = 2\n')

    assert error.field == "handler[0].max_sleep"
    assert "'max_sleep', 'min_sleep'" in str(error)
    assert "max_sleep_duration" in str(error)  # the keys it does take


def test_unknown_key_in_legacy_config_is_named() -> None:
    error = error_of(HEAD + '[[handlers]]\ntype = "environment"\nconfig = { allowd_vars = [] }\n')

    assert error.field == "handlers[0].config.allowd_vars"


@pytest.mark.parametrize(
    ("type_name", "line", "field", "expected"),
    [
        ("environment", 'allowed_vars = "A"', "allowed_vars", "array of strings, got a string"),
        ("environment", 'denied_vars = ["A", 1]', "denied_vars", "item 1 is an integer"),
        ("environment", "allow_list_all = 1", "allow_list_all", "expected a boolean"),
        ("timing", 'max_sleep_duration = "1"', "max_sleep_duration", "got a string"),
        ("timing", "min_sleep_duration = 1.5", "min_sleep_duration", "got a float"),
        ("timing", "min_sleep_duration = -1", "min_sleep_duration", "non-negative"),
        ("filesystem", "path = 1", "path", "expected a string"),
        ("filesystem", 'new_dir = "yes"', "new_dir", "expected a boolean"),
        ("process", "max_processes = true", "max_processes", "got a boolean"),
        ("process", "allowed_paths = [[]]", "allowed_paths", "item 0 is an array"),
        ("random", "seed = -5", "seed", "non-negative"),
        ("random", "max_int = {}", "max_int", "got a table"),
    ],
)
def test_wrong_handler_key_type_is_named(
    type_name: str, line: str, field: str, expected: str
) -> None:
    error = error_of(HEAD + f'[[handler]]\ntype = "{type_name}"\n{line}\n')

    assert (error.file, error.field) == ("m.toml", f"handler[0].{field}")
    assert expected in str(error)


def test_handler_and_grants_find_the_first_of_a_type() -> None:
    manifest = parse(
        HEAD
        + '[[handler]]\ntype = "environment"\nallowed_vars = ["FIRST"]\n'
        + '[[handler]]\ntype = "environment"\nallowed_vars = ["SECOND"]\n'
    )

    assert manifest.handler("environment") == EnvironmentHandler(allowed_vars=("FIRST",))
    assert manifest.grants("environment")
    assert manifest.handler("http-client") is None
    assert not manifest.grants("http-client")


# --- the environment rule ------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "name", "permitted"),
    [
        ({}, "ANYTHING", True),
        ({"denied_vars": ("SECRET",)}, "SECRET", False),
        ({"denied_vars": ("SECRET",)}, "OTHER", True),
        ({"allowed_vars": ("A",)}, "A", True),
        ({"allowed_vars": ("A",)}, "B", False),
        ({"allowed_vars": ()}, "A", False),
        ({"allowed_vars": ("A",), "denied_vars": ("A",)}, "A", False),  # denied beats allowed
        ({"allowed_prefixes": ("APP_",)}, "APP_KEY", True),
        ({"allowed_prefixes": ("APP_",)}, "HOME", False),
        ({"allowed_prefixes": ("APP_",), "denied_vars": ("APP_KEY",)}, "APP_KEY", False),
        # allowed_vars, when set, decides alone: the prefixes are not consulted
        ({"allowed_vars": ("A",), "allowed_prefixes": ("APP_",)}, "APP_KEY", False),
        ({"allowed_vars": ("APP_KEY",), "allowed_prefixes": ("X_",)}, "APP_KEY", True),
        ({"allow_list_all": True}, "ANY", True),
    ],
)
def test_environment_permits_follows_theater(
    config: dict[str, Any], name: str, permitted: bool
) -> None:
    assert EnvironmentHandler(**config).permits(name) is permitted


# --- init data and the merge rule ----------------------------------------------------


@pytest.mark.parametrize(
    ("file_state", "init_data", "merged"),
    [
        ({"a": 1, "b": 2}, {"b": 3, "c": 4}, {"a": 1, "b": 3, "c": 4}),
        ({"cfg": {"x": 1, "y": 2}}, {"cfg": {"y": 9}}, {"cfg": {"y": 9}}),  # replaced whole
        ({"a": 1}, {}, {"a": 1}),
        (None, {"a": 1}, {"a": 1}),
        ({"a": 1}, None, {"a": 1}),
        (None, None, None),
        ([1, 2], {"a": 1}, {"a": 1}),
        ({"a": 1}, [1, 2], [1, 2]),
        ({"a": 1}, "text", "text"),
        (5, 6, 6),
        ("file", None, "file"),
    ],
)
def test_merge_follows_theater(file_state: Any, init_data: Any, merged: Any) -> None:
    assert merge_init_state(file_state, init_data) == merged


def test_merge_leaves_its_arguments_alone() -> None:
    file_state, init_data = {"a": 1}, {"b": 2}

    merge_init_state(file_state, init_data)

    assert (file_state, init_data) == ({"a": 1}, {"b": 2})


@pytest.mark.parametrize(
    "init",
    [{"config": {"k": [1, True]}}, '{"config": {"k": [1, true]}}', b'{"config": {"k": [1, true]}}'],
)
def test_init_data_is_a_dict_json_text_or_json_bytes(init: Any) -> None:
    assert parse_init_data(init) == {"config": {"k": [1, True]}}


def test_no_init_data_is_none() -> None:
    assert parse_init_data(None) is None


@pytest.mark.parametrize("init", ['{"api_key": "sk-secret"', b'{"api_key": "sk-secret",}', ""])
def test_bad_json_init_data_is_refused_without_quoting_it(init: str | bytes) -> None:
    with pytest.raises(ManifestError) as info:
        parse_init_data(init, source="m.toml")

    assert (info.value.file, info.value.field) == ("m.toml", "init")
    assert "invalid JSON" in str(info.value)
    assert "sk-secret" not in str(info.value)


def test_non_utf8_init_bytes_are_refused() -> None:
    with pytest.raises(ManifestError) as info:
        parse_init_data(b'"\xff"')

    assert info.value.field == "init"


def test_init_data_of_another_type_is_refused() -> None:
    with pytest.raises(ManifestError) as info:
        parse_init_data(42)  # type: ignore[arg-type]

    assert info.value.field == "init"
    assert "got int" in str(info.value)


# --- init_state files and loading --------------------------------------------------


def write_manifest(folder: Path, body: str = "", *, init_state: Any = None) -> Path:
    """Write manifest.toml (and init.json when given) into folder; return the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    if init_state is not None:
        (folder / "init.json").write_text(json.dumps(init_state), encoding="utf-8")
        body = 'init_state = "init.json"\n' + body
    path = folder / "manifest.toml"
    path.write_text(HEAD + body, encoding="utf-8")
    return path


def test_init_state_is_resolved_against_the_manifests_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_manifest(tmp_path / "actor", init_state={"config": {"model": "m"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    loaded = load_manifest(path)

    assert loaded.manifest.init_state == tmp_path / "actor" / "init.json"
    assert loaded.manifest.path == path
    assert loaded.state == {"config": {"model": "m"}}


def test_relative_manifest_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_manifest(tmp_path / "actor", init_state={"a": 1})
    monkeypatch.chdir(tmp_path)

    loaded = load_manifest("actor/manifest.toml")

    assert loaded.manifest.path == tmp_path / "actor" / "manifest.toml"
    assert loaded.state == {"a": 1}


@pytest.mark.parametrize(
    "init",
    [{"b": 3, "c": 4}, '{"b": 3, "c": 4}', b'{"b": 3, "c": 4}'],
    ids=["dict", "str", "bytes"],
)
def test_init_data_merges_over_the_init_state_file(tmp_path: Path, init: Any) -> None:
    path = write_manifest(tmp_path, init_state={"a": 1, "b": 2})

    assert load_manifest(path, init).state == {"a": 1, "b": 3, "c": 4}


def test_init_data_alone_is_the_state(tmp_path: Path) -> None:
    assert load_manifest(write_manifest(tmp_path), '["x"]').state == ["x"]


def test_no_init_at_all_gives_none(tmp_path: Path) -> None:
    assert load_manifest(write_manifest(tmp_path)).state is None


def test_init_state_is_read_afresh_on_each_load(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, init_state={"v": 1})
    first = load_manifest(path)
    (tmp_path / "init.json").write_text('{"v": 2}', encoding="utf-8")

    second = load_manifest(path)

    assert (first.state, second.state) == ({"v": 1}, {"v": 2})


def test_missing_init_state_file_names_file_and_field(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, 'init_state = "nope.json"\n')

    with pytest.raises(ManifestError) as info:
        load_manifest(path)

    assert (info.value.file, info.value.field) == (str(path), "init_state")
    assert "nope.json" in str(info.value)
    assert "not found" in str(info.value)


def test_invalid_init_state_json_names_file_and_field(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, init_state={"a": 1})
    (tmp_path / "init.json").write_text("{oops", encoding="utf-8")

    with pytest.raises(ManifestError) as info:
        load_manifest(path)

    assert (info.value.file, info.value.field) == (str(path), "init_state")
    assert "init.json is not valid JSON" in str(info.value)


def test_empty_init_state_path_is_refused() -> None:
    error = error_of(HEAD + 'init_state = ""\n')

    assert error.field == "init_state"
    assert "empty string" in str(error)


def test_parse_manifest_resolves_init_state_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"k": "v"}', encoding="utf-8")

    loaded = parse_manifest(HEAD + 'init_state = "s.json"\n', base_dir=tmp_path, init={"x": 1})

    assert loaded.manifest.init_state == tmp_path / "s.json"
    assert loaded.manifest.path is None
    assert loaded.state == {"k": "v", "x": 1}


def test_parse_manifest_resolves_init_state_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s.json").write_text("[1]", encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    assert parse_manifest(HEAD + 'init_state = "s.json"\n').state == [1]


def test_missing_manifest_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "absent.toml")

    assert info.value.file == str(tmp_path / "absent.toml")
    assert "not found" in str(info.value)


def test_non_utf8_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_bytes(HEAD.encode() + b'description = "\xff"\n')

    with pytest.raises(ManifestError) as info:
        load_manifest(path)

    assert info.value.file == str(path)
    assert "UTF-8" in str(info.value)


def test_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, '[[handler]]\ntype = "timing"\nmin_sleep_duration = "x"\n')

    with pytest.raises(ManifestError) as info:
        load_manifest(path)

    assert (info.value.file, info.value.field) == (str(path), "handler[0].min_sleep_duration")
    assert str(info.value).startswith(f"{path}: handler[0].min_sleep_duration: ")


def test_bad_init_data_names_the_manifest(tmp_path: Path) -> None:
    path = write_manifest(tmp_path)

    with pytest.raises(ManifestError) as info:
        load_manifest(path, "{")

    assert (info.value.file, info.value.field) == (str(path), "init")


def test_loaded_manifest_repr_leaves_the_state_out() -> None:
    loaded = parse_manifest(HEAD, init={"api_key": "sk-do-not-print"})

    assert isinstance(loaded, LoadedManifest)
    assert "sk-do-not-print" not in repr(loaded)
    assert "demo" in repr(loaded)


def test_loading_twice_gives_equal_manifests_and_separate_states() -> None:
    first = parse_manifest(HEAD, init={"n": 1})
    second = parse_manifest(HEAD, init={"n": 2})

    assert first.manifest == second.manifest
    assert (first.state, second.state) == ({"n": 1}, {"n": 2})


def test_manifest_is_frozen_and_hashable() -> None:
    manifest = parse(HEAD + '[[handler]]\ntype = "environment"\nallowed_vars = ["A"]\n')

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        manifest.name = "other"  # type: ignore[misc]
    assert hash(manifest) == hash(
        parse(HEAD + '[[handler]]\ntype = "environment"\nallowed_vars = ["A"]\n')
    )
