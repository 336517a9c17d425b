"""System manifests: supervision trees declared in TOML."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ManifestFactory
from theater_py import ActorStartError, ManifestError, Runtime
from theater_py.system import load_system

REPO = Path(__file__).resolve().parents[1]
CHILD = '[supervisor]\nname = "s"\n[[child]]\nname = "c"\nmanifest = "{w}"\n'


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def worker(make_manifest: ManifestFactory, shared) -> Path:
    return make_manifest("Worker")


def test_the_shipped_system_manifest_reads(monkeypatch: pytest.MonkeyPatch):
    spec = load_system(REPO / "manifests" / "system.toml")
    assert (spec.name, spec.flags.strategy, spec.flags.intensity, spec.flags.period) == (
        "root",
        "one_for_one",
        3,
        10,
    )
    (child,) = spec.children
    assert child.name == "openai-proxy"
    assert child.init["config"]["base_url"] == "https://api.openai.com/v1"
    assert child.shutdown_timeout() == 5.0


def test_a_tree_with_a_subtree_starts_and_answers(tmp_path: Path, worker: Path, runtime: Runtime):
    write(
        tmp_path,
        "inner.toml",
        f"""
[supervisor]
name = "inner"
strategy = "rest_for_one"

[[child]]
name = "leaf"
manifest = "{worker}"
init = {{ note = "inline" }}
""",
    )
    outer = write(
        tmp_path,
        "outer.toml",
        f"""
[supervisor]
name = "outer"
intensity = 2
period = 30
backoff = {{ min_ms = 10, max_ms = 100 }}

[[child]]
name = "first"
manifest = "{worker}"
restart = "transient"
shutdown = "brutal_kill"

[[child]]
manifest = "inner.toml"
""",
    )
    sup = runtime.start_system(outer)
    assert [(c.name, c.type) for c in sup.which_children()] == [
        ("first", "worker"),
        ("inner", "supervisor"),
    ]
    assert runtime.handle("leaf").request("hi")["message"] == "hi"
    assert runtime.supervisor("inner").which_children()[0].name == "leaf"


def test_init_overrides_reach_children_by_name(
    tmp_path: Path, make_manifest: ManifestFactory, runtime: Runtime
):
    echo = make_manifest("Echo", init_state={"a": 1, "b": 2})
    system = write(
        tmp_path,
        "s.toml",
        f"""
[supervisor]
name = "s"

[[child]]
name = "echo"
manifest = "{echo}"
init = {{ b = 3 }}
""",
    )
    runtime.start_system(system, {"echo": {"c": 4}})
    assert runtime.handle("echo").request("state") == {"a": 1, "b": 3, "c": 4}
    with pytest.raises(ManifestError, match=r"no child 'nobody'"):
        load_system(system, {"nobody": {}})


def test_a_child_that_cannot_start_fails_the_system_naming_it(
    tmp_path: Path, make_manifest: ManifestFactory, runtime: Runtime
):
    echo = make_manifest("Echo")
    system = write(
        tmp_path,
        "s.toml",
        f"""
[supervisor]
name = "s"

[[child]]
name = "broken"
manifest = "{echo}"
init = {{ fail_init = "needs a key" }}
""",
    )
    with pytest.raises(ActorStartError, match=r"broken.*needs a key"):
        runtime.start_system(system)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('[supervisor]\nname = "s"\nstrategy = "all_for_one"\n', "supervisor.strategy"),
        ('[supervisor]\nname = "s"\nintensity = -2\n', "supervisor.intensity"),
        ('[supervisor]\nname = "s"\nperiod = 0\n', "supervisor.period"),
        ('[supervisor]\nname = "s"\nauto_shutdown = "soon"\n', "supervisor.auto_shutdown"),
        ('[supervisor]\nname = "s"\ncolor = "red"\n', "supervisor.color"),
        ('[supervisor]\nname = "s"\nbackoff = { min_ms = 5, max_ms = 1 }\n', "supervisor.backoff"),
        ('[supervisor]\nstrategy = "one_for_one"\n', "supervisor.name"),
        ('name = "not a system"\n', "name"),
        ('[supervisor]\nname = "s"\n[[child]]\nname = "c"\n', "child[0].manifest"),
        (
            CHILD + 'restart = "always"\n',
            "child[0].restart",
        ),
        (
            CHILD + "shutdown = -1\n",
            "child[0].shutdown",
        ),
        (
            CHILD + "significant = true\n",  # a permanent child cannot be significant
            "child[0].significant",
        ),
        (
            CHILD + "restarts = 1\n",
            "child[0].restarts",
        ),
        (
            CHILD + 'init = "nope.json"\n',
            "child[0].init",
        ),
        (
            CHILD + '[[child]]\nname = "c"\nmanifest = "{w}"\n',
            "child",
        ),
    ],
)
def test_bad_flags_and_specs_name_the_file_and_field(
    tmp_path: Path, worker: Path, body: str, field: str
):
    path = write(tmp_path, "bad.toml", body.replace("{w}", str(worker)))
    with pytest.raises(ManifestError) as caught:
        load_system(path)
    assert caught.value.field == field
    assert caught.value.file == str(path.resolve())


def test_a_system_that_includes_itself_is_refused(tmp_path: Path):
    path = write(
        tmp_path,
        "loop.toml",
        '[supervisor]\nname = "s"\n[[child]]\nname = "c"\nmanifest = "loop.toml"\n',
    )
    with pytest.raises(ManifestError, match="includes itself"):
        load_system(path)


def test_auto_shutdown_and_significant_children_read_from_toml(tmp_path: Path, worker: Path):
    body = (
        '[supervisor]\nname = "s"\nauto_shutdown = "any_significant"\n'
        f'[[child]]\nname = "c"\nmanifest = "{worker}"\n'
        'restart = "transient"\nsignificant = true\n'
    )
    spec = load_system(write(tmp_path, "sig.toml", body))
    assert spec.flags.auto_shutdown == "any_significant"
    assert spec.children[0].significant is True
