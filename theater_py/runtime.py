"""The runtime: the registry of actors, their root supervisor, the store and the event database."""

from __future__ import annotations

import atexit
import functools
import importlib
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import attrs

from theater_py._cell import ActorCell, CellStatus
from theater_py.actor import Actor
from theater_py.errors import (
    ActorNameInUse,
    ActorNotFound,
    ActorStartError,
    StoreError,
    SupervisorError,
    TheaterError,
)
from theater_py.handle import ActorHandle
from theater_py.supervisor import ChildSpec, Supervisor, SupervisorFlags, SupervisorSpec

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from theater_py._ray.backend import RayBackend
    from theater_py.chain import EventChain, EventDatabase
    from theater_py.manifest import Manifest
    from theater_py.placement import Placement
    from theater_py.store import ContentStore
    from theater_py.supervisor import ChildTarget

__all__ = ["ActorInfo", "Runtime", "default_runtime", "start_actor"]

ROOT_INTENSITY = 2**31 - 1  # the root never gives up; its children carry their own limits
MAX_MEMORY_EVENTS = 10_000
"""How many events an in-memory chain keeps by default (the newest)."""


@attrs.frozen
class ActorInfo:
    """What ``Runtime.actors()`` says of one running actor."""

    name: str
    id: str
    status: str
    restarts: int
    uptime_s: float
    queued: int


@functools.cache
def load_component(component: str) -> type[Actor]:
    """Import the actor class a manifest's ``component`` names (``package.module:Class``).

    Raises:
        ActorStartError: the module or class cannot be imported, or is not an Actor.
    """
    module_name, _, class_name = component.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ActorStartError(
            f"component {component!r}: cannot import {module_name!r}: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if isinstance(cls, type) and issubclass(cls, Actor):
        return cls
    found = sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, Actor) and value is not Actor
    )
    what = "does not exist" if cls is None else "is not a theater_py.Actor subclass"
    has = f"its Actor subclasses: {', '.join(found)}" if found else "it has no Actor subclass"
    raise ActorStartError(f"component {component!r}: {module_name}.{class_name} {what} ({has})")


class Runtime:
    """Owns the actors (by name), their root supervisor, the store and the event database.

    Files live under ``home`` (default ``THEATER_PY_HOME``, else ``~/.theater-py``) and
    are created only when needed: the store on first use, the event database when an
    actor's manifest says ``save_chain = true``. ``in_memory=True`` keeps both in
    memory (tests). A chain kept in memory keeps its newest ``max_memory_events``
    events (``None``: all), so a long-running actor's memory stays bounded; a saved
    chain keeps everything. A runtime is a context manager that shuts down on exit.

    ``ray_address`` runs every actor in a Ray actor on a Ray cluster (``pip install
    'theater-py[ray]'``; see docs/ray.md): ``"local"`` starts a Ray instance the
    runtime owns and stops, ``"auto"`` joins the cluster ``RAY_ADDRESS`` names (or the
    one running on this machine), anything else is an address for ``ray.init``
    (``ray://host:10001``). Supervisors, mailboxes, chains and the control socket stay
    in this process.
    """

    def __init__(
        self,
        *,
        home: str | os.PathLike[str] | None = None,
        in_memory: bool = False,
        max_memory_events: int | None = MAX_MEMORY_EVENTS,
        ray_address: str | None = None,
    ):
        self._home = Path(home) if home is not None else None
        self.in_memory = in_memory
        self.max_memory_events = max_memory_events
        self._lock = threading.RLock()
        self._cells: dict[str, ActorCell] = {}
        self._supervisors: dict[str, Supervisor] = {}
        self._root: Supervisor | None = None
        self._closed = False
        self._ray: RayBackend | None = None
        if ray_address is not None:
            try:
                from theater_py._ray.backend import RayBackend
            except ImportError as exc:
                if exc.name is None or not exc.name.startswith("ray"):
                    raise
                raise TheaterError("ray_address needs Ray: pip install 'theater-py[ray]'") from None

            store = None if in_memory else str(self.home / "store.sqlite3")
            self._ray = RayBackend(ray_address, store_path=store)

    # -- resources -------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        """The folder of the runtime's files."""
        if self._home is None:
            from theater_py._home import theater_home

            self._home = theater_home()
        return self._home

    @functools.cached_property
    def event_database(self) -> EventDatabase:
        """Where event chains are kept (SQLite when an actor persists its chain)."""
        from theater_py.chain import EventDatabase

        if self.in_memory:
            return EventDatabase.in_memory()
        return EventDatabase.lazy(self.home / "events.sqlite3")

    @functools.cached_property
    def content_store(self) -> ContentStore:
        """The content-addressed store shared by the actors granted ``store``."""
        from theater_py.store import ContentStore

        if self._ray is not None:  # one store, on the driver's node, reached through Ray
            return cast("ContentStore", self._ray.store)
        if self.in_memory:
            return ContentStore.in_memory()
        from theater_py._home import ensure_home

        ensure_home(self.home)
        return ContentStore.open(self.home / "store.sqlite3")

    @property
    def root(self) -> Supervisor:
        """The root supervisor (``one_for_one``) of everything this runtime starts."""
        with self._lock:
            if self._root is None:
                flags = SupervisorFlags("one_for_one", intensity=ROOT_INTENSITY, period=1.0)
                self._root = Supervisor(self, SupervisorSpec("root", flags))
                self._root.incarnation = 1
                self._root.replaces_exited = True
            return self._root

    # -- starting ------------------------------------------------------------------------------

    def start_actor(
        self,
        manifest: str | os.PathLike[str],
        init: Any = None,
        *,
        name: str | None = None,
        restart: str = "permanent",
        intensity: int = 3,
        period: float = 5.0,
    ) -> ActorHandle:
        """Start an actor under the root supervisor; return once its ``init`` has run.

        Args:
            manifest: the path of its ``manifest.toml``.
            init: init data (a dict, JSON text or JSON bytes), merged shallowly over
                the manifest's ``init_state``.
            name: the name to register; the manifest's ``name`` by default.
            restart: ``permanent``, ``transient`` or ``temporary``.
            intensity: restarts tolerated within ``period`` seconds; an actor that
                crashes more often is stopped for good, and no other actor is touched.
            period: the window of ``intensity``, in seconds.

        Raises:
            ManifestError: the manifest or the init data is invalid.
            ActorNameInUse: a running actor has that name.
            ActorStartError: the component cannot be loaded or its ``init`` raised.
        """
        cell = self._make_cell(manifest, init, name)
        spec = ChildSpec(
            name=cell.name,
            manifest=manifest,
            init=init,
            restart=restart,
            intensity=intensity,
            period=period,
        )
        self._start_child(spec, cell)
        return ActorHandle(self, cell.name, cell)

    def start_system(
        self, path: str | os.PathLike[str], init: Mapping[str, Any] | None = None
    ) -> Supervisor:
        """Start the supervision tree a system manifest declares; return once all is up.

        Args:
            path: the system manifest.
            init: init data by child name, merged over each named child's ``init``.

        Raises:
            ManifestError: the system manifest is invalid (the error names the field).
            ActorStartError: a child could not start (the others were stopped again).
        """
        from theater_py.system import load_system

        return self.start_supervisor(load_system(path, init))

    def start_supervisor(self, spec: SupervisorSpec) -> Supervisor:
        """Start a supervision tree under the root supervisor; return once all is up.

        The tree is a ``temporary`` child of the root: when its top supervisor gives
        up, the tree stays down.

        Raises:
            ActorNameInUse: a supervisor of that name runs.
            ActorStartError: a child could not start (the others were stopped again).
        """
        supervisor = self._make_supervisor(spec)
        child = ChildSpec(name=spec.name, type="supervisor", supervisor=spec, restart="temporary")
        self._start_child(child, supervisor)
        return supervisor

    def _start_child(self, spec: ChildSpec, target: ChildTarget) -> None:
        try:
            self.root.start_child(spec, target)
        except ActorStartError:
            self._forget(spec.name, target)
            raise
        except SupervisorError as exc:
            self._forget(spec.name, target)
            target.terminate("not adopted")
            raise ActorStartError(str(exc)) from None  # it names the supervisor and child

    def make_target(self, spec: ChildSpec) -> ChildTarget:
        """Create (not start) what a child spec describes: a worker's cell or a supervisor."""
        if spec.type == "supervisor":
            assert spec.supervisor is not None
            return self._make_supervisor(spec.supervisor)
        assert spec.manifest is not None
        return self._make_cell(spec.manifest, spec.init, spec.name, spec.placement)

    def _make_supervisor(self, spec: SupervisorSpec) -> Supervisor:
        with self._lock:
            if self._closed:
                raise ActorStartError("the runtime is shut down")
            existing = self._supervisors.get(spec.name)
            if existing is not None and existing.is_alive():
                raise ActorNameInUse(f"a supervisor named {spec.name!r} is running")
            supervisor = Supervisor(self, spec)
            self._supervisors[spec.name] = supervisor
        return supervisor

    def _make_cell(
        self, manifest: Any, init: Any, name: str | None, placement: Placement | None = None
    ) -> ActorCell:
        from theater_py.manifest import load_manifest

        loaded = load_manifest(manifest, init)
        actor_class = load_component(loaded.manifest.component)
        if self._ray is not None:  # the incarnations run in Ray actors; the cell stays here
            actor_class = self._ray.actor_class(actor_class, loaded.manifest, placement)
        name = name or loaded.manifest.name
        with self._lock:
            if self._closed:
                raise ActorStartError("the runtime is shut down")
            existing = self._cells.get(name)
            if existing is not None and existing.is_alive():
                raise ActorNameInUse(f"an actor named {name!r} is running")
            actor_id, chain = self._chain(name, loaded.manifest)
            cell = ActorCell(
                self,
                name,
                manifest=loaded.manifest,
                state=loaded.state,
                actor_class=actor_class,
                chain=chain,
                actor_id=actor_id,
            )
            self._cells[name] = cell
        return cell

    def _chain(self, name: str, manifest: Manifest) -> tuple[str, EventChain]:
        """Return a new actor's id and chain; a saved chain's id is the one its name had."""
        if not manifest.save_chain or self.in_memory:
            actor_id = str(uuid.uuid4())
            limit = self.max_memory_events
            return actor_id, self.event_database.chain(
                actor_id, persist=False, max_memory_events=limit
            )
        try:
            actor_id = self.event_database.saved_actor_id(name)
            chain = self.event_database.chain(
                actor_id, persist=True, durability=manifest.chain_durability
            )
        except StoreError as exc:
            raise ActorStartError(f"actor {name!r}: cannot open its saved chain: {exc}") from exc
        return actor_id, chain

    def _forget(self, name: str, target: object) -> None:
        with self._lock:
            if self._cells.get(name) is target:
                del self._cells[name]
            if self._supervisors.get(name) is target:
                del self._supervisors[name]

    def unregister(self, cell: ActorCell) -> None:
        """Free the name of an actor that stopped for good."""
        self._forget(cell.name, cell)

    # -- finding and stopping ----------------------------------------------------------------

    def find_cell(self, name: str) -> ActorCell | None:
        """Return the live cell of that name, if any."""
        cell = self._cells.get(name)
        return cell if cell is not None and cell.is_alive() else None

    def handle(self, name: str) -> ActorHandle:
        """Return the handle of a running actor.

        Raises:
            ActorNotFound: no running actor has that name.
        """
        cell = self.find_cell(name)
        if cell is None:
            raise ActorNotFound(f"no actor named {name!r} is running")
        return ActorHandle(self, name, cell)

    def supervisor(self, name: str) -> Supervisor:
        """Return a running supervisor by name (``root`` is the runtime's own)."""
        if name == "root":
            return self.root
        supervisor = self._supervisors.get(name)
        if supervisor is None or not supervisor.is_alive():
            raise ActorNotFound(f"no supervisor named {name!r} is running")
        return supervisor

    def actors(self) -> list[ActorInfo]:
        """Describe every actor that runs or waits for a restart, in start order."""
        now = time.monotonic()
        with self._lock:
            cells = [c for c in self._cells.values() if c.is_alive()]
        return [
            ActorInfo(
                name=c.name,
                id=c.id,
                status=c.status.value,
                restarts=max(c.incarnation - 1, 0),
                uptime_s=round(now - c.started_at, 3) if c.started_at else 0.0,
                queued=c.queued(),
            )
            for c in cells
        ]

    def stop_actor(
        self, name: str, timeout: float | None = None, *, missing_ok: bool = False
    ) -> bool:
        """Stop an actor for good (its supervisor will not restart it).

        Returns:
            Whether it finished within the timeout.

        Raises:
            ActorNotFound: no actor has that name (unless ``missing_ok``).
        """
        cell = self._cells.get(name)
        if cell is not None and cell.status is CellStatus.STOPPING:
            return cell.stop(timeout)  # another caller's stop is under way: see it through
        if cell is None or not cell.is_alive():
            if missing_ok:
                return True
            raise ActorNotFound(f"no actor named {name!r} is running")
        owner = cell.owner or self._root
        try:
            if owner is None:
                raise ActorNotFound(name)
            finished = owner.terminate_child(name, timeout, delete=True)
        except ActorNotFound:  # not supervised (or already forgotten): stop the cell itself
            cell.exit_listener = None  # a stop is not a crash: nobody may restart it
            finished = cell.stop(timeout)
        self.unregister(cell)
        return finished

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop every actor and supervisor, newest first, then close the files."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            root = self._root
        if root is not None:
            root.stop(timeout)
        for name in ("content_store", "event_database"):
            resource = self.__dict__.get(name)
            if resource is not None:
                resource.close()
        if self._ray is not None:
            self._ray.shutdown()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.shutdown()


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """Return the process-wide runtime that serves ``start_actor`` without ``runtime=``."""
    global _default  # noqa: PLW0603 -- one default per process, created on first use
    with _default_lock:
        if _default is None or _default._closed:
            _default = Runtime()
            atexit.register(_default.shutdown)
        return _default


def start_actor(
    manifest: str | os.PathLike[str],
    init: Any = None,
    *,
    name: str | None = None,
    runtime: Runtime | None = None,
    restart: str = "permanent",
    intensity: int = 3,
    period: float = 5.0,
) -> ActorHandle:
    """Start an actor and return its handle once its ``init`` has run.

    See :meth:`Runtime.start_actor`; ``runtime`` defaults to :func:`default_runtime`.
    """
    return (runtime or default_runtime()).start_actor(
        manifest, init, name=name, restart=restart, intensity=intensity, period=period
    )
