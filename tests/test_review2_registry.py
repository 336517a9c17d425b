"""Review 2: shipped-manifest lookup under malformed, failing or clashing entry points.

Every failure to find a shipped manifest is a ManifestError naming the manifest (never a
raw TypeError, ValueError or the plugin's own exception), and a name two installed
packages both claim is refused rather than resolved to whichever was read last.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from theater_py import ManifestError, registry
from theater_py.registry import resolve_manifest

GROUP = registry.MANIFEST_GROUP


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *pairs: tuple[str, str]) -> None:
    """Make the registry see exactly these (name, value) entry points."""
    points = [metadata.EntryPoint(name, value, GROUP) for name, value in pairs]

    def entry_points(*, group: str) -> list[metadata.EntryPoint]:
        return points if group == GROUP else []

    monkeypatch.setattr(registry, "metadata", types.SimpleNamespace(entry_points=entry_points))


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Importable stand-ins for plugin packages, under tmp_path."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "r2_plain_module.py").write_text("X = 1\n", encoding="utf-8")
    exploding = root / "r2_exploding"
    exploding.mkdir()
    (exploding / "__init__.py").write_text(
        'raise RuntimeError("the plugin failed at import")\n', encoding="utf-8"
    )
    for package in ("r2_first", "r2_second"):
        folder = root / package
        folder.mkdir()
        (folder / "__init__.py").write_text("", encoding="utf-8")
        (folder / "echo.toml").write_text(f'name = "{package}"\n', encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.chdir(tmp_path)
    yield root
    for name in ("r2_plain_module", "r2_exploding", "r2_first", "r2_second"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("r2_plain_module", "r2_plain_module"),  # a module, not a package: TypeError today
        ("r2_exploding", "the plugin failed at import"),  # its import raises RuntimeError
        ("r2_first:attr", "r2_first:attr"),  # an object reference, not a package
    ],
)
def test_a_malformed_or_failing_entry_point_is_a_manifest_error(
    plugins: Path, monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    fake_entry_points(monkeypatch, ("echo", value))

    with pytest.raises(ManifestError) as caught:
        resolve_manifest("echo")

    assert caught.value.file == "echo"
    assert says in str(caught.value)


def test_two_packages_shipping_the_same_name_are_refused_naming_both(
    plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points(monkeypatch, ("echo", "r2_first"), ("echo", "r2_second"))

    with pytest.raises(ManifestError) as caught:
        resolve_manifest("echo")

    assert "r2_first" in str(caught.value)
    assert "r2_second" in str(caught.value)


def test_the_same_entry_point_seen_twice_is_not_a_clash(
    plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One distribution found twice on sys.path (an editable install and a build dir)."""
    fake_entry_points(monkeypatch, ("echo", "r2_first"), ("echo", "r2_first"))

    assert resolve_manifest("echo") == plugins / "r2_first" / "echo.toml"


def test_a_folder_of_that_name_here_does_not_hide_the_shipped_manifest(
    plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout named like its actor (``./echo/``) is not a manifest file."""
    fake_entry_points(monkeypatch, ("echo", "r2_first"))
    (Path.cwd() / "echo").mkdir()

    assert resolve_manifest("echo") == plugins / "r2_first" / "echo.toml"


def test_a_folder_beside_a_system_file_does_not_hide_a_child_s_shipped_manifest(
    plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from theater_py.system import _child_manifest

    fake_entry_points(monkeypatch, ("echo", "r2_first"))
    system = Path.cwd() / "systems" / "system.toml"
    (system.parent / "echo").mkdir(parents=True)

    found = _child_manifest("echo", system, "child[0].manifest")

    assert found == plugins / "r2_first" / "echo.toml"
