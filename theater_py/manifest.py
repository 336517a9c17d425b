"""Actor manifests: the TOML file naming an actor's class, its init state and its handlers.

The format is Theater's (2025)::

    name = "openai-proxy"
    version = "0.1.0"
    component = "theater_py_actors.openai_proxy:OpenAIProxyActor"
    init_state = "init.json"          # JSON, relative to the manifest's folder

    [[handler]]
    type = "environment"
    allowed_vars = ["{{default config.api_key_env \"OPENAI_API_KEY\"}}"]

The older ``[[handlers]]`` form, with the keys under ``config = {...}``, is read too.
Before the text is read it is rendered as a template over the merged init state (see
:mod:`theater_py._template`); ``init_state`` itself is read from the text with every
placeholder neutralised, since the state to render with depends on it.
"""

from __future__ import annotations

import functools
import json
import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, cast

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from theater_py._suggest import expected_keys
from theater_py._template import NEUTRAL_MARK, compile_template
from theater_py.errors import ManifestError
from theater_py.placement import Placement, parse_placement

__all__ = [
    "HANDLER_TYPES",
    "EnvironmentHandler",
    "FilesystemHandler",
    "HandlerConfig",
    "HttpClientHandler",
    "LoadedManifest",
    "Manifest",
    "MessageServerHandler",
    "ProcessHandler",
    "RandomHandler",
    "RuntimeHandler",
    "StoreHandler",
    "SupervisorHandler",
    "TimingHandler",
    "load_manifest",
    "merge_init_state",
    "parse_init_data",
    "parse_manifest",
]

_T = TypeVar("_T")


@attrs.frozen
class HandlerConfig:
    """One ``[[handler]]`` table: a capability the manifest grants, with its limits."""

    type_name: ClassVar[str]
    """The handler's ``type`` in the manifest (``"http-client"``)."""


@attrs.frozen
class MessageServerHandler(HandlerConfig):
    """Grants receiving messages, requests and channels. Takes no keys."""

    type_name: ClassVar[str] = "message-server"


@attrs.frozen
class RuntimeHandler(HandlerConfig):
    """Grants logging and the runtime's own services. Takes no keys."""

    type_name: ClassVar[str] = "runtime"


@attrs.frozen
class SupervisorHandler(HandlerConfig):
    """Grants starting and supervising child actors. Takes no keys."""

    type_name: ClassVar[str] = "supervisor"


@attrs.frozen
class HttpClientHandler(HandlerConfig):
    """Grants making HTTP requests. Takes no keys."""

    type_name: ClassVar[str] = "http-client"


@attrs.frozen
class StoreHandler(HandlerConfig):
    """Grants the content-addressed store. Takes no keys."""

    type_name: ClassVar[str] = "store"


@attrs.frozen
class EnvironmentHandler(HandlerConfig):
    """Grants reading environment variables, as :meth:`permits` allows."""

    type_name: ClassVar[str] = "environment"

    allowed_vars: tuple[str, ...] | None = None
    """When set, the only variables that may be read."""
    denied_vars: tuple[str, ...] | None = None
    """Variables that may never be read; they win over everything else."""
    allowed_prefixes: tuple[str, ...] | None = None
    """When set (and ``allowed_vars`` is not), variables must start with one of these."""
    allow_list_all: bool = False
    """Whether the actor may list every variable's name."""

    def permits(self, var_name: str) -> bool:
        """Return whether the variable may be read, by Theater's rule.

        A name in ``denied_vars`` is refused; if ``allowed_vars`` is set the name must be
        in it; else if ``allowed_prefixes`` is set the name must start with one; else it
        is allowed.
        """
        if self.denied_vars is not None and var_name in self.denied_vars:
            return False
        if self.allowed_vars is not None:
            return var_name in self.allowed_vars
        if self.allowed_prefixes is not None:
            return var_name.startswith(self.allowed_prefixes)
        return True


@attrs.frozen
class TimingHandler(HandlerConfig):
    """Grants the clock and sleeping, within bounds in milliseconds."""

    type_name: ClassVar[str] = "timing"

    max_sleep_duration: int = 3_600_000
    """The longest sleep allowed, in milliseconds (an hour by default)."""
    min_sleep_duration: int = 1
    """The shortest sleep allowed, in milliseconds."""


@attrs.frozen
class FilesystemHandler(HandlerConfig):
    """Grants file access under one folder."""

    type_name: ClassVar[str] = "filesystem"

    path: str | None = None
    """The folder the actor may use."""
    new_dir: bool | None = None
    """Whether to create a fresh folder for the actor."""
    allowed_commands: tuple[str, ...] | None = None
    """The commands the actor may run in that folder."""


@attrs.frozen
class ProcessHandler(HandlerConfig):
    """Grants running operating-system processes."""

    type_name: ClassVar[str] = "process"

    max_processes: int = 10
    """How many processes may run at once."""
    max_output_buffer: int = 1_048_576
    """How many bytes of a process's output are buffered."""
    allowed_programs: tuple[str, ...] | None = None
    """When set, the only programs that may be run."""
    allowed_paths: tuple[str, ...] | None = None
    """When set, the only paths processes may be started in."""


@attrs.frozen
class RandomHandler(HandlerConfig):
    """Grants random numbers."""

    type_name: ClassVar[str] = "random"

    seed: int | None = None
    """A fixed seed, for reproducible runs."""
    max_bytes: int = 1_048_576
    """The most random bytes one call may ask for."""
    max_int: int | None = None
    """The largest random integer one call may ask for (no limit when unset)."""
    allow_crypto_secure: bool = False
    """Whether cryptographically secure randomness may be asked for."""


HANDLER_TYPES: dict[str, type[HandlerConfig]] = {
    cls.type_name: cls
    for cls in (
        MessageServerHandler,
        RuntimeHandler,
        SupervisorHandler,
        HttpClientHandler,
        StoreHandler,
        EnvironmentHandler,
        TimingHandler,
        FilesystemHandler,
        ProcessHandler,
        RandomHandler,
    )
}
"""The handler types a manifest may name, by ``type``."""


@attrs.frozen
class Manifest:
    """An actor's manifest, read and validated."""

    name: str
    """The actor's name (its registered name unless the starter gives another)."""
    version: str
    """The actor's version."""
    component: str
    """The actor class, as ``package.module:ClassName`` (not imported here)."""
    description: str | None = None
    """A one-line description."""
    init_state: Path | None = None
    """The JSON file of the initial state, resolved against the manifest's folder."""
    save_chain: bool = False
    """Whether the actor's event chain is persisted."""
    chain_durability: Literal["batched", "fsync"] = "batched"
    """How a saved chain reaches the disk: ``batched`` (a background thread writes) or
    ``fsync`` (each event is synced before recording returns); see
    docs/events-and-store.md for what each loses on a kill or a power loss."""
    handlers: tuple[HandlerConfig, ...] = ()
    """The capabilities granted, in manifest order."""
    path: Path | None = None
    """The manifest file, or ``None`` for a manifest given as text."""
    long_description: str | None = None
    """A longer description."""
    placement: Placement | None = None
    """What a Ray node must offer to run the actor (``[placement]``; see
    :mod:`theater_py.placement`); ignored without Ray."""

    def handler(self, type_name: str) -> HandlerConfig | None:
        """Return the first handler of this type, or ``None`` when none is granted."""
        for handler in self.handlers:
            if handler.type_name == type_name:
                return handler
        return None

    def grants(self, type_name: str) -> bool:
        """Return whether a handler of this type is granted."""
        return self.handler(type_name) is not None


@attrs.frozen
class LoadedManifest:
    """A manifest and the initial state it starts its actor with."""

    manifest: Manifest
    """The rendered, validated manifest."""
    state: Any = attrs.field(repr=False)  # init data may carry secrets: keep it out of reprs
    """The merged init state (a JSON value), or ``None``."""


@attrs.frozen
class _Document:
    # The top level of a manifest, before paths are resolved.
    name: str
    version: str
    component: str
    description: str | None = None
    long_description: str | None = None
    init_state: str | None = None
    save_chain: bool = False
    chain_durability: str = "batched"
    handler: Any = None
    handlers: Any = None
    placement: Any = None


_TOML_TYPES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    list: "an array",
    dict: "a table",
}


def _toml_type(value: Any) -> str:
    return _TOML_TYPES.get(type(value), f"a {type(value).__name__}")


def _string(value: Any, _: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {_toml_type(value)}")
    return value


def _boolean(value: Any, _: Any) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected a boolean, got {_toml_type(value)}")
    return value


def _count(value: Any, _: Any) -> int:
    # Theater's integer keys are all unsigned.
    if type(value) is not int:
        raise TypeError(f"expected a non-negative integer, got {_toml_type(value)}")
    if value < 0:
        raise ValueError("expected a non-negative integer, got a negative one")
    return value


def _strings(value: Any, _: Any) -> tuple[str, ...]:
    if type(value) is not list:
        raise TypeError(f"expected an array of strings, got {_toml_type(value)}")
    for index, item in enumerate(value):
        if type(item) is not str:
            raise TypeError(f"expected an array of strings, item {index} is {_toml_type(item)}")
    return tuple(value)


def _make_converter() -> cattrs.Converter:
    # Strict hooks: cattrs would coerce 5 to "5" and "abc" to ("a", "b", "c").
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _string)
    converter.register_structure_hook(bool, _boolean)
    converter.register_structure_hook(int, _count)
    converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _strings)
    return converter


_converter = _make_converter()


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _structure(data: dict[str, Any], cls: type[_T], source: str, where: str) -> _T:
    try:
        return _converter.structure(data, cls)
    except ClassValidationError as exc:
        noted, plain = exc.group_exceptions()
        for error in plain:
            if isinstance(error, ForbiddenExtraKeysError):
                extra = sorted(error.extra_fields)
                if not where and {"supervisor", "child"} & set(extra):
                    raise ManifestError(
                        "this is a system manifest ([supervisor] and [[child]] tables), not "
                        "an actor's: run it with `theater-py run FILE` (in Python, "
                        "Runtime.start_system)",
                        file=source,
                    ) from None
                known = list(attrs.fields_dict(cls))  # type: ignore[arg-type]
                keys = ", ".join(repr(key) for key in extra)
                raise ManifestError(
                    f"unknown key{'s' if len(extra) > 1 else ''} {keys} "
                    f"({expected_keys(extra[0], known)})",
                    file=source,
                    field=_join(where, extra[0]),
                ) from None
        if not noted:
            raise ManifestError(str(exc), file=source, field=where or None) from None
        error, note = noted[0]
        message = "required key is missing" if isinstance(error, KeyError) else str(error)
        raise ManifestError(message, file=source, field=_join(where, note.name)) from None


def _handler(table: dict[str, Any], where: str, flat: bool, source: str) -> HandlerConfig:
    if "type" not in table:
        raise ManifestError("every handler needs a type", file=source, field=f"{where}.type")
    type_name = table["type"]
    if type(type_name) is not str:
        raise ManifestError(
            f"expected a string, got {_toml_type(type_name)}", file=source, field=f"{where}.type"
        )
    cls = HANDLER_TYPES.get(type_name)
    if cls is None:
        raise ManifestError(
            f"unknown handler type {type_name!r} (expected one of {', '.join(HANDLER_TYPES)})",
            file=source,
            field=f"{where}.type",
        )
    if flat:
        return _structure({k: v for k, v in table.items() if k != "type"}, cls, source, where)
    for key in table:
        if key not in ("type", "config"):
            raise ManifestError(
                f"unknown key {key!r} (a [[handlers]] table holds only type and config)",
                file=source,
                field=f"{where}.{key}",
            )
    config = table.get("config", {})
    if type(config) is not dict:
        raise ManifestError(
            f"expected a table, got {_toml_type(config)}", file=source, field=f"{where}.config"
        )
    return _structure(config, cls, source, f"{where}.config")


def _handlers(document: _Document, source: str) -> tuple[HandlerConfig, ...]:
    if document.handler is not None and document.handlers is not None:
        raise ManifestError(
            "use either [[handler]] tables (keys beside type) or [[handlers]] tables "
            "(keys under config), not both",
            file=source,
            field="handlers",
        )
    flat = document.handlers is None
    key = "handler" if flat else "handlers"
    tables = document.handler if flat else document.handlers
    if tables is None:
        return ()
    if type(tables) is not list or not all(type(table) is dict for table in tables):
        raise ManifestError(f"expected an array of tables ([[{key}]])", file=source, field=key)
    return tuple(
        _handler(table, f"{key}[{index}]", flat, source) for index, table in enumerate(tables)
    )


def _durability(value: str, source: str) -> Literal["batched", "fsync"]:
    if value in ("batched", "fsync"):
        return cast(Literal["batched", "fsync"], value)
    raise ManifestError(
        f'expected "batched" or "fsync", got {value!r}', file=source, field="chain_durability"
    )


def _check_component(component: str, source: str) -> None:
    module, colon, class_name = component.partition(":")
    if not (
        colon
        and class_name.isidentifier()
        and all(part.isidentifier() for part in module.split("."))
    ):
        raise ManifestError(
            f"expected 'package.module:ClassName', got {component!r}",
            file=source,
            field="component",
        )


def _parse_toml(text: str, source: str, note: str = "") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"invalid TOML{note}: {exc}", file=source) from None


def _init_state_path(value: Any, base_dir: Path, source: str) -> Path | None:
    if value is None:
        return None
    if type(value) is not str or not value:
        got = "an empty string" if value == "" else _toml_type(value)
        raise ManifestError(
            f"expected the path of a JSON file, got {got}", file=source, field="init_state"
        )
    return base_dir / value


@functools.lru_cache(maxsize=64)
def _build(text: str, source: str, base_dir: Path, path: Path | None, note: str) -> Manifest:
    # Cached on the (rendered) text: the runtime loads the same manifests again and again.
    document = _structure(_parse_toml(text, source, note), _Document, source, "")
    if not document.name:
        raise ManifestError("expected a non-empty string", file=source, field="name")
    _check_component(document.component, source)
    return Manifest(
        name=document.name,
        version=document.version,
        component=document.component,
        description=document.description,
        init_state=_init_state_path(document.init_state, base_dir, source),
        save_chain=document.save_chain,
        chain_durability=_durability(document.chain_durability, source),
        handlers=_handlers(document, source),
        path=path,
        long_description=document.long_description,
        placement=parse_placement(document.placement, source=source),
    )


@functools.lru_cache(maxsize=64)
def _raw_init_state(text: str, source: str, base_dir: Path) -> Path | None:
    neutral = compile_template(text, source).neutral()
    note = " (read with placeholders emptied: a placeholder must stand for a whole value)"
    value = _parse_toml(neutral, source, note).get("init_state")
    if isinstance(value, str) and NEUTRAL_MARK in value:
        raise _rendered_init_state(source)
    return _init_state_path(value, base_dir, source)


def _rendered_init_state(source: str) -> ManifestError:
    return ManifestError(
        "read before rendering, so it cannot hold a placeholder",
        file=source,
        field="init_state",
    )


def _read_init_state(path: Path | None, source: str) -> Any:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"file {path} not found", file=source, field="init_state") from None
    except OSError as exc:
        raise ManifestError(
            f"cannot read {path}: {exc.strerror}", file=source, field="init_state"
        ) from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{path} is not valid JSON: {exc}", file=source, field="init_state"
        ) from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path} is not UTF-8 text", file=source, field="init_state") from None


def merge_init_state(file_state: Any, init_data: Any) -> Any:
    """Merge the ``init_state`` file's JSON with the init data, by Theater's rule.

    When both are objects, each top-level key of ``init_data`` replaces the file's
    (nested objects are replaced whole, not merged). Otherwise ``init_data`` wins,
    unless it is ``None``.

    Args:
        file_state: the JSON read from the manifest's ``init_state`` file, or ``None``.
        init_data: the JSON given when starting the actor, or ``None``.

    Returns:
        The merged state; a new dict when both are dicts, else one of the arguments.
    """
    if init_data is None:
        return file_state
    if isinstance(file_state, dict) and isinstance(init_data, dict):
        return {**file_state, **init_data}
    return init_data


def parse_init_data(init: dict[str, Any] | str | bytes | None, *, source: str | None = None) -> Any:
    """Return init data as a JSON value: a dict as is, JSON text or bytes decoded.

    Args:
        init: a dict (a list is accepted too), a JSON string, JSON bytes, or ``None``.
        source: the manifest the data is for, to name in errors.

    Raises:
        ManifestError: the text is not valid JSON, or ``init`` is of another type
            (field ``init``); the message never quotes the data.
    """
    if init is None or isinstance(init, dict | list):
        return init
    if not isinstance(init, str | bytes | bytearray):
        raise ManifestError(
            f"expected a dict, a JSON string or JSON bytes, got {type(init).__name__}",
            file=source,
            field="init",
        )
    try:
        return json.loads(init)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"invalid JSON: {exc}", file=source, field="init") from None
    except UnicodeDecodeError:
        raise ManifestError("invalid JSON: not UTF-8 text", file=source, field="init") from None


def parse_manifest(
    text: str,
    *,
    source: str = "<string>",
    base_dir: Path | None = None,
    init: dict[str, Any] | str | bytes | None = None,
) -> LoadedManifest:
    """Read a manifest given as text, render it over its init state and validate it.

    Args:
        text: the manifest's TOML text (a template, see :mod:`theater_py._template`).
        source: what to call the manifest in errors.
        base_dir: the folder ``init_state`` is relative to; the working directory by
            default.
        init: init data merged over the ``init_state`` file (see :func:`parse_init_data`).

    Returns:
        The manifest and the merged init state.

    Raises:
        ManifestError: the manifest, its init state file, a placeholder or the init data
            is invalid; the error's ``file`` and ``field`` say where.
    """
    return _load(text, source, base_dir, None, init)


def load_manifest(
    path: str | os.PathLike[str], init: dict[str, Any] | str | bytes | None = None
) -> LoadedManifest:
    """Read a manifest file, render it over its init state and validate it.

    Args:
        path: the manifest file; its ``init_state`` is relative to its folder. A bare name
            (``"openai-proxy"``) names a manifest an installed package ships (see
            :mod:`theater_py.registry`).
        init: init data merged over the ``init_state`` file (see :func:`parse_init_data`).

    Returns:
        The manifest and the merged init state.

    Raises:
        ManifestError: the file cannot be read, or the manifest, its init state file, a
            placeholder or the init data is invalid; ``file`` and ``field`` say where. A
            name that no installed package ships.
    """
    from theater_py.registry import resolve_manifest

    file = resolve_manifest(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ManifestError("manifest file not found", file=str(file)) from None
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest: {exc.strerror}", file=str(file)) from None
    except UnicodeDecodeError:
        raise ManifestError("the manifest is not UTF-8 text", file=str(file)) from None
    return _load(text, str(file), file.parent, file, init)


def _load(
    text: str, source: str, base_dir: Path | None, path: Path | None, init: Any
) -> LoadedManifest:
    init_data = parse_init_data(init, source=source)
    base = Path.cwd() if base_dir is None else base_dir
    if "{{" not in text:
        manifest = _build(text, source, base, path, "")
        state = merge_init_state(_read_init_state(manifest.init_state, source), init_data)
        return LoadedManifest(manifest, state)
    # A template: init_state comes first, since the state it names is what we render over.
    template = compile_template(text, source)
    init_state = _raw_init_state(text, source, base) if "init_state" in text else None
    state = merge_init_state(_read_init_state(init_state, source), init_data)
    manifest = _build(template.render(state, source), source, base, path, " (after rendering)")
    if manifest.init_state != init_state:  # a placeholder wrote the key itself
        raise _rendered_init_state(source)
    return LoadedManifest(manifest, state)
