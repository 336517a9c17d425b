"""Shipped manifests, found by name: ``start_actor("openai-proxy")``, as Theater's registry.

An installed package ships a manifest by declaring an entry point in the group
``theater_py.manifests``: the entry point's name is the manifest's name, its value the
package that holds ``NAME.toml`` (and the init files the manifest names beside it)::

    [project.entry-points."theater_py.manifests"]
    openai-proxy = "theater_py_actors.openai_proxy.manifests"

The runtime knows no plugin: it reads the entry points of whatever is installed. A path
(anything that is a file, or has a folder or a ``.toml`` suffix in it) is never looked up.

The JSON files shipped beside a manifest are named ``MANIFEST:FILE``
(``openai-proxy:init-moonshot`` is ``init-moonshot.json`` beside ``openai-proxy.toml``), so
that ``--init`` can take them from an installed wheel, where they have no short path.
"""

from __future__ import annotations

import os
import re
from importlib import metadata, resources
from pathlib import Path
from typing import Final

from theater_py.errors import ManifestError

__all__ = [
    "MANIFEST_GROUP",
    "is_name",
    "resolve_manifest",
    "resolve_shipped_file",
    "shipped_manifests",
]

MANIFEST_GROUP: Final = "theater_py.manifests"
"""The entry point group through which a package ships its manifests."""

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SHIPPED_FILE: Final = re.compile(rf"({_NAME.pattern}):({_NAME.pattern})")


def shipped_manifests() -> dict[str, tuple[str, ...]]:
    """The shipped manifests' names, each with the packages that hold it (nothing imported).

    A name two packages claim maps to both, sorted (:func:`resolve_manifest` refuses it):
    which one wins must not depend on the order of ``sys.path``.
    """
    claims: dict[str, set[str]] = {}
    for ep in metadata.entry_points(group=MANIFEST_GROUP):
        claims.setdefault(ep.name, set()).add(ep.value)  # one distribution seen twice: one
    return {name: tuple(sorted(packages)) for name, packages in claims.items()}


def is_name(reference: str | os.PathLike[str]) -> bool:
    """Whether ``reference`` reads as a manifest's name rather than as a file's path.

    A name has no folder and no ``.toml`` suffix, and no file of that name exists here (a
    folder of that name, such as a checkout named like its actor, is not a manifest).
    """
    if not isinstance(reference, str) or not _NAME.fullmatch(reference):
        return False
    return not reference.endswith(".toml") and not Path(reference).is_file()


def resolve_manifest(
    reference: str | os.PathLike[str], *, file: str | None = None, field: str | None = None
) -> Path:
    """The manifest file a reference names: a shipped manifest's file, or the path itself.

    Args:
        reference: a shipped manifest's name (``"openai-proxy"``) or a manifest's path.
        file: the file an error names (the file that names the manifest); the name if
            omitted.
        field: the field an error names, if any.

    Returns:
        The file; a path is returned as given (absolute), whether or not it exists.

    Raises:
        ManifestError: a name that no installed package ships (the error lists those
            that are shipped), or whose package cannot be imported.
    """
    if not is_name(reference):
        return Path(reference).absolute()
    name = os.fspath(reference)
    where = {"file": name if file is None else file, "field": field}
    return _shipped_folder(name, where) / f"{name}.toml"


def resolve_shipped_file(reference: str, *, field: str | None = None) -> Path | None:
    """The JSON file a ``MANIFEST:FILE`` reference names, shipped beside that manifest.

    ``openai-proxy:init-moonshot`` (or ``...:init-moonshot.json``) is the file
    ``init-moonshot.json`` in the folder of the shipped manifest ``openai-proxy``.

    Args:
        reference: what the user typed.
        field: the field an error names (``--init``), if any.

    Returns:
        The file, or ``None`` when ``reference`` is not of that form, or is a file here
        (a path is never looked up).

    Raises:
        ManifestError: no installed package ships that manifest, or no such file beside
            it (the error lists the JSON files that are shipped there).
    """
    match = _SHIPPED_FILE.fullmatch(reference)
    if match is None or Path(reference).exists():
        return None
    manifest, name = match.groups()
    where = {"file": reference, "field": field}
    folder = _shipped_folder(manifest, where)
    found = folder / (name if name.endswith(".json") else f"{name}.json")
    if not found.is_file():
        known = ", ".join(f"{manifest}:{path.stem}" for path in sorted(folder.glob("*.json")))
        raise ManifestError(
            f"the manifest {manifest!r} ships no file {found.name!r} (shipped: {known or 'none'})",
            **where,
        )
    return found


def _shipped_folder(name: str, where: dict[str, str | None]) -> Path:
    """The folder of the package that ships the manifest ``name``."""
    shipped = shipped_manifests()
    packages = shipped.get(name)
    if packages is None:
        known = ", ".join(sorted(shipped)) or "none"
        raise ManifestError(
            f"no manifest file {name!r} here, and no installed package ships a manifest of "
            f"that name (shipped: {known}); give the path of a manifest.toml",
            **where,
        )
    if len(packages) > 1:
        raise ManifestError(
            f"two installed packages ship a manifest of that name ({' and '.join(packages)}); "
            "uninstall one, or give the path of a manifest.toml",
            **where,
        )
    [package] = packages
    try:
        found = resources.files(package)
    except Exception as exc:  # noqa: BLE001 -- a plugin's import may raise anything
        # ImportError, TypeError (a module, not a package), ValueError, the plugin's own.
        raise ManifestError(
            f"the package {package!r} that ships this manifest cannot be read: "
            f"{type(exc).__name__}: {exc}",
            **where,
        ) from None
    if not isinstance(found, Path):
        # Zipped packages: the manifest's init files must be beside it on disk.
        raise ManifestError(f"{package} is not installed as files on disk", **where)
    return found
