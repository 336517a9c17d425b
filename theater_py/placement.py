"""Where an actor may run on a Ray cluster: the ``[placement]`` table.

A manifest (or a child spec of a system manifest) may say what a Ray worker must offer
to run the actor::

    [placement]
    num_cpus = 1
    resources = { gpu_box = 0.5 }
    # or: driver = true   (run in the driver's process, not on a worker)

The values go to Ray as they are (``ray.remote(...).options(num_cpus=..., resources=...)``);
without Ray (a runtime with no ``ray_address``) the table is read, checked and ignored.
Nothing here imports Ray.
"""

from __future__ import annotations

from typing import Any

import attrs

from theater_py.errors import ManifestError

__all__ = ["Placement", "parse_placement"]

_KEYS = ("num_cpus", "resources", "driver")


@attrs.frozen
class Placement:
    """What a Ray node must offer to run the actor (Ray's own resource names)."""

    num_cpus: float | None = None
    """CPUs the actor holds while it runs (Ray's ``num_cpus``); ``None``: Ray's default."""
    resources: tuple[tuple[str, float], ...] = ()
    """Custom resources (Ray's ``resources``), as sorted ``(name, amount)`` pairs."""
    driver: bool = False
    """Run in the driver's process, as without Ray (an actor that spawns children, such
    as a router, whose children then run on Ray workers)."""

    def unmet(self, offered: dict[str, float]) -> tuple[str, float] | None:
        """The first field asking more than ``offered`` (a cluster's resources) holds, as
        ``(field, amount offered)``, or ``None`` when every amount fits."""
        wanted = [("placement.num_cpus", "CPU", self.num_cpus)]
        wanted += [(f"placement.resources.{name}", name, amount) for name, amount in self.resources]
        for field, name, amount in wanted:
            if amount is not None and amount > offered.get(name, 0.0):
                return field, offered.get(name, 0.0)
        return None

    def ray_options(self) -> dict[str, Any]:
        """Return the options to pass to Ray's ``.options(...)``."""
        options: dict[str, Any] = {}
        if self.num_cpus is not None:
            options["num_cpus"] = self.num_cpus
        if self.resources:
            options["resources"] = dict(self.resources)
        return options


_RESERVED = ("CPU", "GPU", "memory", "object_store_memory")
"""Ray's own resource names: not custom resources (``num_cpus`` is the CPU field)."""
_STEP = 1e-4
"""Ray counts resources in steps of this: a finer amount is refused by Ray."""


def _amount(value: Any, source: str | None, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ManifestError(
            f"expected a non-negative number, got {value!r}", file=source, field=field
        )
    if abs(round(value / _STEP) * _STEP - value) > _STEP / 100:
        raise ManifestError(
            f"Ray counts resources in steps of 0.0001, got {value!r}", file=source, field=field
        )
    return float(value)


def parse_placement(
    value: Any, *, source: str | None, field: str = "placement"
) -> Placement | None:
    """Read a ``[placement]`` table; ``None`` when there is none.

    Raises:
        ManifestError: an unknown key, a value that is not a non-negative number or is
            finer than Ray's 0.0001 step, or a resource named as one of Ray's own
            (``CPU``, ``GPU``, ``memory``, ``object_store_memory``); the error names the
            field, such as ``placement.resources.gpu``.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError("expected a table", file=source, field=field)
    for key in value:
        if key not in _KEYS:
            raise ManifestError(
                f"unknown key (expected one of {', '.join(_KEYS)})",
                file=source,
                field=f"{field}.{key}",
            )
    num_cpus = value.get("num_cpus")
    resources = value.get("resources", {})
    driver = value.get("driver", False)
    if not isinstance(driver, bool):
        raise ManifestError(
            f"expected a boolean, got {driver!r}", file=source, field=f"{field}.driver"
        )
    if driver and (num_cpus is not None or resources):
        raise ManifestError(
            "an actor in the driver takes no num_cpus or resources",
            file=source,
            field=f"{field}.driver",
        )
    if not isinstance(resources, dict):
        raise ManifestError("expected a table", file=source, field=f"{field}.resources")
    for name in resources:
        if name in _RESERVED:
            raise ManifestError(
                f"{name} is Ray's own resource, not a custom one"
                + (" (use num_cpus)" if name == "CPU" else ""),
                file=source,
                field=f"{field}.resources.{name}",
            )
    pairs = tuple(
        sorted(
            (str(name), _amount(amount, source, f"{field}.resources.{name}"))
            for name, amount in resources.items()
        )
    )
    return Placement(
        num_cpus=None if num_cpus is None else _amount(num_cpus, source, f"{field}.num_cpus"),
        resources=pairs,
        driver=driver,
    )
