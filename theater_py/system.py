"""System manifests: a supervision tree declared in TOML.

::

    [supervisor]
    name = "root"
    strategy = "one_for_one"     # one_for_all, rest_for_one, simple_one_for_one
    intensity = 3
    period = 10
    backoff = { min_ms = 100, max_ms = 5000 }   # optional
    auto_shutdown = "never"      # any_significant, all_significant

    [[child]]
    name = "openai-proxy"
    manifest = "openai-proxy.toml"   # an actor manifest, or another system manifest
    init = "init-openai.json"        # a JSON file, or an inline table
    restart = "permanent"
    shutdown = 5000
    significant = false              # true: its exit may end the supervisor

Paths are relative to the file that names them; a child's ``manifest`` may also be the
name of a manifest an installed package ships (``manifest = "openai-proxy"``, see
:mod:`theater_py.registry`) when no file of that name is beside it. A child whose manifest is itself
a system manifest (it has a ``[supervisor]`` table) is a subtree, ``type =
"supervisor"``.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from theater_py._suggest import expected_keys
from theater_py.errors import ManifestError, SupervisorError
from theater_py.manifest import merge_init_state
from theater_py.placement import parse_placement
from theater_py.supervisor import Backoff, ChildSpec, SupervisorFlags, SupervisorSpec

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

__all__ = ["load_system"]

SUPERVISOR_KEYS = {"name", "strategy", "intensity", "period", "backoff", "auto_shutdown"}
CHILD_KEYS = {
    "name",
    "manifest",
    "init",
    "restart",
    "shutdown",
    "type",
    "intensity",
    "period",
    "backoff",
    "significant",
    "placement",
}
BACKOFF_KEYS = {"min_ms", "max_ms", "multiplier", "jitter"}
_SUPERVISOR_TABLE = re.compile(r"^\s*\[\s*supervisor\s*\]", re.MULTILINE)


def load_system(
    path: str | os.PathLike[str], init: Mapping[str, Any] | None = None
) -> SupervisorSpec:
    """Read a system manifest (and the subtrees it names) into a :class:`SupervisorSpec`.

    Args:
        path: the system manifest, or the name of a shipped one (``"openai-proxy-system"``).
        init: init data by child name, anywhere in the tree, merged over that child's
            ``init`` by Theater's shallow rule (for instance to point a proxy at a test
            server).

    Raises:
        ManifestError: the file is unreadable or invalid; the error names the file and
            the field (``child[1].restart``), or ``init`` names no child.
    """
    from theater_py.registry import resolve_manifest

    overrides = dict(init or {})
    spec = _load(resolve_manifest(path), (), overrides)
    if overrides:
        name = sorted(overrides)[0]
        raise ManifestError(f"init names no child {name!r}", file=str(Path(path)), field="init")
    return spec


def _load(path: Path, _seen: tuple[Path, ...], overrides: dict[str, Any]) -> SupervisorSpec:
    file = Path(path).resolve()
    if file in _seen:
        raise ManifestError("a system manifest includes itself", file=str(file))
    document = _read_toml(file)
    unknown = sorted(set(document) - {"supervisor", "child"})
    if "component" in unknown:
        raise ManifestError(
            "this is an actor's manifest (it names a component), not a system manifest: "
            "start it with `theater-py start FILE` (in Python, start_actor)",
            file=str(file),
        )
    if unknown:
        raise ManifestError(
            f"unknown key ({expected_keys(unknown[0], ['supervisor', 'child'])})",
            file=str(file),
            field=unknown[0],
        )
    table = document.get("supervisor")
    if not isinstance(table, dict):
        raise ManifestError(
            "a system manifest needs a [supervisor] table", file=str(file), field="supervisor"
        )
    flags = _flags(table, file)
    children = document.get("child", [])
    if not isinstance(children, list):
        raise ManifestError("expected [[child]] tables", file=str(file), field="child")
    specs = tuple(
        _child(entry, index, file, (*_seen, file), overrides)
        for index, entry in enumerate(children)
    )
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError("expected a non-empty string", file=str(file), field="supervisor.name")
    try:
        return SupervisorSpec(name=name, flags=flags, children=specs)
    except SupervisorError as exc:
        raise ManifestError(str(exc), file=str(file), field="child") from None


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ManifestError("file not found", file=str(file)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"invalid TOML: {exc}", file=str(file)) from None


def _check_keys(table: dict[str, Any], allowed: set[str], file: Path, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ManifestError(
                f"unknown key ({expected_keys(key, sorted(allowed))})",
                file=str(file),
                field=f"{where}.{key}",
            )


def _backoff(value: Any, file: Path, where: str) -> Backoff | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError("expected a table", file=str(file), field=where)
    _check_keys(value, BACKOFF_KEYS, file, where)
    try:
        return Backoff(**value)
    except (SupervisorError, TypeError) as exc:
        raise ManifestError(str(exc), file=str(file), field=where) from None


def _flags(table: dict[str, Any], file: Path) -> SupervisorFlags:
    _check_keys(table, SUPERVISOR_KEYS, file, "supervisor")
    keys = ("strategy", "intensity", "period", "auto_shutdown")
    values = {k: table[k] for k in keys if k in table}
    try:
        return SupervisorFlags(
            **values, backoff=_backoff(table.get("backoff"), file, "supervisor.backoff")
        )
    except SupervisorError as exc:
        field = str(exc).partition(":")[0]
        raise ManifestError(
            str(exc).partition(": ")[2], file=str(file), field=f"supervisor.{field}"
        ) from None


def _child(
    entry: Any, index: int, file: Path, seen: tuple[Path, ...], overrides: dict[str, Any]
) -> ChildSpec:
    where = f"child[{index}]"
    if not isinstance(entry, dict):
        raise ManifestError("expected a table", file=str(file), field=where)
    _check_keys(entry, CHILD_KEYS, file, where)
    manifest = entry.get("manifest")
    if not isinstance(manifest, str) or not manifest:
        raise ManifestError(
            "expected the path of a manifest", file=str(file), field=f"{where}.manifest"
        )
    manifest_path = _child_manifest(manifest, file, f"{where}.manifest")
    declared = entry.get("type")
    kind = "supervisor" if _is_system(manifest_path, file, where) else "worker"
    if declared is not None and declared != kind:
        raise ManifestError(
            f"{manifest} is a {kind} manifest, not a {declared}",
            file=str(file),
            field=f"{where}.type",
        )
    subtree = _load(manifest_path, seen, overrides) if kind == "supervisor" else None
    name = entry.get("name", subtree.name if subtree else "")
    init = _init(entry.get("init"), file, where)
    if isinstance(name, str) and name in overrides:
        init = merge_init_state(init, overrides.pop(name))
    try:
        return ChildSpec(
            name=name,
            manifest=manifest_path,
            init=init,
            restart=entry.get("restart", "permanent"),
            shutdown=entry.get("shutdown"),
            type=kind,
            supervisor=subtree,
            intensity=entry.get("intensity"),
            period=entry.get("period"),
            backoff=_backoff(entry.get("backoff"), file, f"{where}.backoff"),
            significant=entry.get("significant", False),
            placement=parse_placement(
                entry.get("placement"), source=str(file), field=f"{where}.placement"
            ),
        )
    except SupervisorError as exc:
        field, _, message = str(exc).partition(": ")
        field = field.removeprefix(f"child {entry.get('name')}.")
        raise ManifestError(message, file=str(file), field=f"{where}.{field}") from None


def _child_manifest(manifest: str, file: Path, field: str) -> Path:
    """A child's manifest: a path relative to ``file``, or a shipped manifest's name."""
    from theater_py.registry import is_name, resolve_manifest

    path = (file.parent / manifest).resolve()
    if path.is_file() or not is_name(manifest):  # a folder named like it is no manifest
        return path
    return resolve_manifest(manifest, file=str(file), field=field)


def _is_system(path: Path, file: Path, where: str) -> bool:
    # An actor manifest is a template, valid TOML only once rendered: look, don't parse.
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(
            f"cannot read {path}: {exc.strerror}", file=str(file), field=f"{where}.manifest"
        ) from None
    return _SUPERVISOR_TABLE.search(text) is not None


def _init(value: Any, file: Path, where: str) -> Any:
    if value is None or isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise ManifestError(
            "expected a JSON file path or an inline table", file=str(file), field=f"{where}.init"
        )
    init_file = file.parent / value
    try:
        return json.loads(init_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(
            f"init file {init_file} not found", file=str(file), field=f"{where}.init"
        ) from None
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"init file {init_file} is not valid JSON: {exc}", file=str(file), field=f"{where}.init"
        ) from None
