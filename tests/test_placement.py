"""The [placement] table (issue 14), and Ray staying an optional import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from theater_py.errors import ManifestError
from theater_py.manifest import parse_manifest
from theater_py.placement import Placement
from theater_py.system import load_system

ROOT = Path(__file__).resolve().parents[1]
ACTOR = 'name = "a"\nversion = "0.1.0"\ncomponent = "tests.sample_actors:Echo"\n'


def test_importing_theater_py_never_imports_ray():
    # A fresh interpreter: this one may have imported ray for another test.
    script = textwrap.dedent("""\
        import sys
        import theater_py, theater_py.cli, theater_py.placement
        from theater_py import Runtime
        with Runtime(in_memory=True) as runtime:
            runtime.content_store
        print("ray" in sys.modules)
        """)
    result = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_a_ray_address_without_ray_installed_says_what_to_install(tmp_path: Path):
    (tmp_path / "ray.py").write_text('raise ModuleNotFoundError("no ray here", name="ray")\n')
    script = textwrap.dedent("""\
        from theater_py import Runtime
        from theater_py.errors import TheaterError
        try:
            Runtime(ray_address="local")
        except TheaterError as exc:
            print(exc)
        """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
    )
    assert result.stdout.strip() == "ray_address needs Ray: pip install 'theater-py[ray]'"


def test_a_manifest_s_placement_is_read_as_ray_will_take_it():
    loaded = parse_manifest(ACTOR + "[placement]\nnum_cpus = 1\nresources = { gpu_box = 0.5 }\n")
    placement = loaded.manifest.placement
    assert placement == Placement(num_cpus=1.0, resources=(("gpu_box", 0.5),))
    assert placement.ray_options() == {"num_cpus": 1.0, "resources": {"gpu_box": 0.5}}
    assert parse_manifest(ACTOR).manifest.placement is None
    in_driver = parse_manifest(ACTOR + "[placement]\ndriver = true\n").manifest.placement
    assert in_driver == Placement(driver=True)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ("[placement]\nnum_cpu = 1\n", "placement.num_cpu"),
        ("[placement]\nnum_cpus = -1\n", "placement.num_cpus"),
        ("[placement]\nnum_cpus = true\n", "placement.num_cpus"),
        ('[placement]\nresources = { gpu = "two" }\n', "placement.resources.gpu"),
        ("[placement]\nresources = 3\n", "placement.resources"),
        ("placement = 1\n", "placement"),
        ("[placement]\ndriver = 1\n", "placement.driver"),
        ("[placement]\ndriver = true\nnum_cpus = 1\n", "placement.driver"),
    ],
)
def test_a_bad_placement_is_an_error_naming_the_field(table: str, field: str):
    with pytest.raises(ManifestError) as caught:
        parse_manifest(ACTOR + table)
    assert caught.value.field == field


def test_a_child_spec_may_pin_its_placement(tmp_path: Path):
    (tmp_path / "a.toml").write_text(ACTOR)
    system = tmp_path / "system.toml"
    system.write_text(
        '[supervisor]\nname = "top"\n\n[[child]]\nname = "a"\nmanifest = "a.toml"\n'
        "placement = { num_cpus = 2, resources = { big = 1 } }\n"
    )
    spec = load_system(system)
    assert spec.children[0].placement == Placement(num_cpus=2.0, resources=(("big", 1.0),))
    system.write_text(
        '[supervisor]\nname = "top"\n\n[[child]]\nname = "a"\nmanifest = "a.toml"\n'
        "placement = { cpus = 2 }\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_system(system)
    assert caught.value.field == "child[0].placement.cpus"
