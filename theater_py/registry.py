"""Shipped manifests, found by name: ``start_actor("openai-proxy")``, as Theater's registry.

An installed package ships a manifest by declaring an entry point in the group
``theater_py.manifests``: the entry point's name is the manifest's name, its value the
package that holds ``NAME.toml`` (and the init files the manifest names beside it)::

    [project.entry-points."theater_py.manifests"]
    openai-proxy = "theater_py_actors.openai_proxy.manifests"

The runtime knows no plugin: it reads the entry points of whatever is installed. A path
(anything that is a file, or has a folder or a ``.toml`` suffix in it) is never looked up.
"""

from __future__ import annotations

import os
import re
from importlib import metadata, resources
from pathlib import Path
from typing import Final

from theater_py.errors import ManifestError

__all__ = ["MANIFEST_GROUP", "is_name", "resolve_manifest", "shipped_manifests"]

MANIFEST_GROUP: Final = "theater_py.manifests"
"""The entry point group through which a package ships its manifests."""

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def shipped_manifests() -> dict[str, str]:
    """The shipped manifests' names, each with the package that holds it (nothing imported).

    A name two packages claim maps to both, joined by `` and `` (:func:`resolve_manifest`
    refuses it): which one wins must not depend on the order of ``sys.path``.
    """
    claims: dict[str, list[str]] = {}
    for ep in metadata.entry_points(group=MANIFEST_GROUP):
        packages = claims.setdefault(ep.name, [])
        if ep.value not in packages:  # one distribution seen twice is no clash
            packages.append(ep.value)
    return {name: " and ".join(sorted(packages)) for name, packages in claims.items()}


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
    shipped = shipped_manifests()
    package = shipped.get(name)
    if package is None:
        known = ", ".join(sorted(shipped)) or "none"
        raise ManifestError(
            f"no manifest file {name!r} here, and no installed package ships a manifest of "
            f"that name (shipped: {known}); give the path of a manifest.toml",
            **where,
        )
    if " and " in package:
        raise ManifestError(
            f"two installed packages ship a manifest of that name ({package}); "
            "uninstall one, or give the path of a manifest.toml",
            **where,
        )
    try:
        found = resources.files(package).joinpath(f"{name}.toml")
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
