"""Shipped manifests found by name (theater_py.registry), as Theater's registry finds them."""

from __future__ import annotations

from pathlib import Path

import pytest

import theater_py_actors.openai_proxy.manifests as shipped
import theater_py_actors.router.manifests as router_shipped
from theater_py import ManifestError, Runtime
from theater_py.manifest import load_manifest
from theater_py.registry import resolve_manifest, shipped_manifests
from theater_py.system import load_system
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

REPO = Path(__file__).resolve().parents[1]
PACKAGE_MANIFESTS = Path(shipped.__file__).resolve().parent
ROUTER_MANIFESTS = Path(router_shipped.__file__).resolve().parent


def test_the_proxy_ships_its_manifest_through_an_entry_point() -> None:
    assert shipped_manifests()["openai-proxy"] == ("theater_py_actors.openai_proxy.manifests",)
    assert resolve_manifest("openai-proxy") == PACKAGE_MANIFESTS / "openai-proxy.toml"


def test_a_bare_name_loads_the_shipped_manifest_with_its_init_state() -> None:
    loaded = load_manifest("openai-proxy", {"config": {"default_model": "gpt-4o-mini"}})

    assert loaded.manifest.name == "openai-proxy"
    assert loaded.manifest.path == PACKAGE_MANIFESTS / "openai-proxy.toml"
    assert loaded.manifest.init_state == PACKAGE_MANIFESTS / "init.json"
    assert loaded.state["config"]["default_model"] == "gpt-4o-mini"


def test_start_actor_with_a_bare_name_serves_requests(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIM_KEY", "sk-sim-registry")
    with OpenAISimulator(api_key="sk-sim-registry") as sim:
        init = {"config": {"base_url": sim.base_url, "api_key_env": "SIM_KEY"}}
        proxy = runtime.start_actor("openai-proxy", init)
        request = {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "max_tokens": 16,
        }
        reply = proxy.request_json({"GenerateCompletion": {"request": request}}, timeout=30)
        proxy.stop()

    assert proxy.name == "openai-proxy"
    assert reply["Completion"]["completion"]["content"][0]["text"] == "You said: Hi"


def test_a_path_is_still_a_path() -> None:
    loaded = load_manifest(REPO / "manifests" / "openai-proxy.toml")
    assert loaded.manifest.name == "openai-proxy"
    assert resolve_manifest("manifests/openai-proxy.toml").name == "openai-proxy.toml"


def test_a_file_of_that_name_here_wins_over_the_shipped_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "openai-proxy").write_text("x", encoding="utf-8")

    assert resolve_manifest("openai-proxy") == tmp_path / "openai-proxy"


def test_an_unknown_name_says_which_manifests_are_shipped() -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest("openai-prxy")

    message = str(caught.value)
    assert message.startswith("openai-prxy: no manifest file 'openai-prxy' here")
    assert "(shipped: openai-proxy, openai-proxy-system, openai-router)" in message


def test_a_system_child_may_name_a_shipped_manifest(tmp_path: Path) -> None:
    system = tmp_path / "system.toml"
    system.write_text(
        '[supervisor]\nname = "top"\nstrategy = "one_for_one"\n\n'
        '[[child]]\nname = "proxy"\nmanifest = "openai-proxy"\n',
        encoding="utf-8",
    )

    spec = load_system(system)

    assert spec.children[0].manifest == PACKAGE_MANIFESTS / "openai-proxy.toml"


def test_a_system_child_naming_no_shipped_manifest_names_the_field(tmp_path: Path) -> None:
    system = tmp_path / "system.toml"
    system.write_text(
        '[supervisor]\nname = "top"\nstrategy = "one_for_one"\n\n'
        '[[child]]\nname = "proxy"\nmanifest = "no-such-actor"\n',
        encoding="utf-8",
    )

    with pytest.raises(ManifestError) as caught:
        load_system(system)

    assert caught.value.field == "child[0].manifest"
    assert caught.value.file == str(system)
    assert "shipped: openai-proxy" in str(caught.value)


def test_the_shipped_system_resolves_its_child_inside_the_package() -> None:
    spec = load_system("openai-proxy-system")

    assert spec.children[0].manifest == PACKAGE_MANIFESTS / "openai-proxy.toml"


def test_the_repository_manifests_folder_links_to_the_package_files() -> None:
    packages = (PACKAGE_MANIFESTS, ROUTER_MANIFESTS)
    shipped = {p.name for d in packages for p in d.iterdir() if p.suffix in {".toml", ".json"}}
    links = {p.name: p for p in (REPO / "manifests").iterdir() if p.name != "README.md"}

    assert {link.resolve().name for link in links.values()} == shipped
    for link in links.values():
        assert link.is_symlink()
        assert link.resolve().parent in packages
    assert links["system.toml"].resolve().name == "openai-proxy-system.toml"


# -- init files shipped beside a manifest ---------------------------------------------------


def test_a_shipped_init_file_is_named_manifest_colon_file() -> None:
    # In an installed wheel the proxy's init files had no path a user could type.
    from theater_py.registry import resolve_shipped_file

    moonshot = PACKAGE_MANIFESTS / "init-moonshot.json"
    assert resolve_shipped_file("openai-proxy:init-moonshot") == moonshot
    assert resolve_shipped_file("openai-proxy:init-moonshot.json") == moonshot
    assert resolve_shipped_file("init-moonshot.json") is None  # a path stays a path
    assert resolve_shipped_file("some/folder:file") is None


def test_an_unknown_shipped_init_file_lists_those_that_are_shipped() -> None:
    from theater_py.registry import resolve_shipped_file

    with pytest.raises(ManifestError, match=r"ships no file 'init-moon\.json'") as caught:
        resolve_shipped_file("openai-proxy:init-moon", field="--init")
    assert "openai-proxy:init-moonshot" in str(caught.value)
    assert caught.value.field == "--init"
    with pytest.raises(ManifestError, match=r"shipped: .*openai-proxy"):
        resolve_shipped_file("no-such-manifest:init")


def test_init_takes_a_shipped_init_file_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from theater_py.cli import _init_argument, main

    monkeypatch.chdir(tmp_path)  # nothing of that name here: no repository path helps
    expected = json.loads((PACKAGE_MANIFESTS / "init-moonshot.json").read_text())
    assert _init_argument("openai-proxy:init-moonshot") == expected
    status = main(["--home", str(tmp_path / "h"), "start", "openai-proxy", "--init", "x:y"])
    assert status == 2
    assert "no installed package ships a manifest of that name" in capsys.readouterr().err
