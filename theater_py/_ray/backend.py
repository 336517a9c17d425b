"""A runtime's link to a Ray cluster: connecting, the Hosts it starts, watching them, stopping.

:class:`RayBackend` is what ``Runtime(ray_address=...)`` makes. It connects (``local``
starts a Ray instance the runtime owns; ``auto`` honours ``RAY_ADDRESS``; anything else is
an address for ``ray.init``), starts the store's host on the driver's node, creates one
Host per incarnation, watches every Host with one thread so an idle actor whose node dies
is seen, and at shutdown kills every Ray actor it started and disconnects, leaving a
cluster it joined as it was.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from theater_py._ray.host import RayHost
from theater_py._ray.remote import remote_class
from theater_py._ray.store import StoreClient, StoreHost
from theater_py.errors import ManifestError, TheaterError

if TYPE_CHECKING:
    from theater_py.actor import Actor
    from theater_py.context import ActorContext
    from theater_py.manifest import Manifest
    from theater_py.placement import Placement

__all__ = ["NAMESPACE", "RayBackend"]

logger = logging.getLogger("theater_py.ray")

NAMESPACE = "theater-py"
"""The Ray namespace of every actor a runtime starts (each one named)."""
START_TIMEOUT = 50.0
"""Seconds an incarnation's Host may take to be placed, start and run ``init``: less than
the supervisor's start timeout (60 s), so the failed start names the cause."""
STOP_TIMEOUT = 10.0
"""Seconds a Host's ``on_stop`` may take before the Host is killed regardless."""
GONE_TIMEOUT = 10.0
"""Seconds a shutdown waits for Ray to stop listing the actors it killed."""
WATCH_RENEW = 600.0
"""Seconds one watch call lasts before the driver makes the next (a bounded wait)."""
WATCH_POLL = 0.2
"""Seconds between the watcher's looks at its own stop (its wait on the Hosts is this)."""


class _Connection:
    """This process's Ray connection, shared by its runtimes.

    The runtime that connects counts as its first user; a runtime made while it is open
    uses it too and counts. Ray is shut down when the last user stops, so one runtime's
    shutdown never ends the Ray another still uses. A connection the process made itself
    (its own ``ray.init()``) is the caller's: used, never counted, never shut down. Only
    one ``local`` runtime may be open at a time: a second one would not own the instance
    the first started, so it is refused.
    """

    lock = threading.Lock()
    users = 0
    """Runtimes using the connection a runtime made (0: none made, or it was shut down)."""
    local_open = False
    """A runtime with ``ray_address="local"`` is open."""

    @classmethod
    def acquire(cls, address: str) -> bool:
        """Connect (or use the connection), and return whether this runtime counts.

        Raises:
            TheaterError: ``local`` while another ``local`` runtime is open.
        """
        with cls.lock:
            if address == "local" and cls.local_open:
                raise TheaterError(
                    "ray_address='local': a runtime of this process already started a local "
                    "Ray instance and is open; use that runtime, or stop it first"
                )
            if cls.users == 0 and ray.is_initialized():
                counted = False  # the process's own ray.init(): the caller's
            else:
                if cls.users == 0:
                    _connect(address)
                cls.users += 1
                counted = True
            if address == "local":
                cls.local_open = True
            return counted

    @classmethod
    def release(cls, address: str, counted: bool) -> None:
        """Stop using the connection; the last counted user shuts Ray down."""
        with cls.lock:
            if address == "local":
                cls.local_open = False
            if not counted:
                return
            cls.users -= 1
            if cls.users == 0:
                ray.shutdown()


def _connect(address: str) -> None:
    """Connect this process to Ray; ``local`` starts an instance that ends with it."""
    if address == "local":
        # address="local": always a new instance, never one found running on this machine.
        ray.init(address="local", namespace=NAMESPACE, include_dashboard=False)
    elif address == "auto":
        ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", namespace=NAMESPACE)
    else:
        ray.init(address=address, namespace=NAMESPACE)


class RayBackend:
    """One runtime's Ray connection and the Ray actors it started."""

    def __init__(self, address: str, *, store_path: str | None) -> None:
        self.start_timeout = START_TIMEOUT
        self.watch_renew = WATCH_RENEW
        self._address = address
        self._counted = _Connection.acquire(address)
        try:
            self._start(store_path)
        except BaseException:
            _Connection.release(address, self._counted)
            raise

    def _start(self, store_path: str | None) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._hosts: dict[str, Any] = {}
        self._watches: dict[Any, tuple[Any, ActorContext]] = {}
        self._flushes: dict[Any, tuple[Any, ActorContext]] = {}
        self._closed = threading.Event()
        self.asker = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="theater-ray-ask")
        """Where the driver asks a Host again for a slow deferred reply (not on Ray's
        callback thread, which must not wait)."""
        # The store's file is on the driver's node (its home): a host pinned there (not
        # softly: elsewhere it would open an empty file of that name), restarted by Ray
        # when its process dies, since the file survives it. A store in memory would come
        # back empty: it is not restarted, its loss is a StoreError.
        self._store_host = StoreHost.options(
            name=f"{self.run_id}/store",
            namespace=NAMESPACE,
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False
            ),
            num_cpus=0,
            max_restarts=0 if store_path is None else -1,
        ).remote(store_path)
        self.store = StoreClient(self._store_host)
        self._watcher = threading.Thread(
            target=self._watch_loop, name="theater-ray-watch", daemon=True
        )
        self._watcher.start()

    # -- actors ----------------------------------------------------------------------

    def actor_class(
        self, target: type[Actor], manifest: Manifest, placement: Placement | None
    ) -> type[Actor]:
        """Return the class a cell instantiates so its incarnations run on Ray (``target``
        itself for an actor placed in the driver)."""
        placement = placement or manifest.placement
        if placement is not None and placement.driver:
            return target
        return remote_class(self, target, manifest, placement)

    def create_host(
        self, ctx: ActorContext, manifest: Manifest, placement: Placement | None
    ) -> Any:
        """Start the Ray actor of one incarnation (placed by ``placement``)."""
        if self._closed.is_set():
            raise TheaterError("the runtime's Ray backend is shut down")
        unmet = None if placement is None else placement.unmet(ray.cluster_resources())
        if unmet is not None:  # else the start would wait its whole timeout for nothing
            field, offered = unmet
            raise ManifestError(
                f"no node of the Ray cluster offers it now (the cluster has {offered:g} in all)",
                file=None if manifest.path is None else str(manifest.path),
                field=field,
            )
        name = f"{self.run_id}/{ctx.name}/{uuid.uuid4().hex[:8]}"
        # Ray's default would hold a CPU for scheduling: an actor mostly waits on
        # messages, so it asks for none unless its [placement] says num_cpus.
        options: dict[str, Any] = {
            "name": name,
            "namespace": NAMESPACE,
            "max_restarts": 0,
            "num_cpus": 0,
        }
        if placement is not None:
            options.update(placement.ray_options())
        host = RayHost.options(**options).remote(
            manifest.component, ctx.name, ctx.id, manifest, self.store
        )
        with self._lock:
            self._hosts[name] = host
        return host

    def watch(self, host: Any, ctx: ActorContext) -> None:
        """Have the incarnation of ``ctx`` exit (a crash) if ``host`` dies while idle, and
        bring the events it records between calls to ``ctx``'s chain."""
        self._watch(host, ctx)
        self._flush(host, ctx)

    def _watch(self, host: Any, ctx: ActorContext) -> None:
        ref = host.watch.remote(self.watch_renew)
        with self._lock:
            self._watches[ref] = (host, ctx)

    def _flush(self, host: Any, ctx: ActorContext) -> None:
        ref = host.flush_events.remote(self.watch_renew)
        with self._lock:
            self._flushes[ref] = (host, ctx)

    def _flushed(self, ref: Any, host: Any, ctx: ActorContext) -> None:
        """A flush ended: record its events, and keep one pending while the Host runs."""
        try:
            events, stopped = ray.get(ref, timeout=0)
            for event_type, data, description in events:
                ctx.record(event_type, json.loads(data), description)
        except Exception as exc:  # noqa: BLE001 -- a lost Host is its watch's to report
            logger.debug("actor %s: a flush of its events ended: %s", ctx.name, type(exc).__name__)
            return
        with self._lock:
            running = any(known is host for known in self._hosts.values())
        if running and not stopped and not self._closed.is_set():
            self._flush(host, ctx)

    def release(self, host: Any, ctx: ActorContext) -> None:
        """Run the Host's ``on_stop`` (its events go to ``ctx``'s chain), then kill it."""
        with self._lock:
            for table in (self._watches, self._flushes):
                for ref, (watched, _) in list(table.items()):
                    if watched is host:
                        del table[ref]
        try:
            outcome = ray.get(host.stop.remote(), timeout=STOP_TIMEOUT)
            for event_type, data, description in outcome[2]:
                ctx.record(event_type, json.loads(data), description)
        except Exception as exc:  # noqa: BLE001 -- a lost or stuck Host is killed regardless
            logger.debug(
                "actor %s: its Ray actor did not stop cleanly: %s", ctx.name, type(exc).__name__
            )
        self._kill(host)

    def discard(self, host: Any) -> None:
        """Kill a Host whose ``init`` never answered, without asking it to stop (a Host
        that was never placed would only make the stop wait its whole timeout)."""
        self._kill(host)

    def _kill(self, host: Any) -> None:
        with contextlib.suppress(Exception):
            ray.kill(host, no_restart=True)
        with self._lock:
            for name, known in list(self._hosts.items()):
                if known is host:
                    del self._hosts[name]

    def _reap_abandoned(self) -> None:
        """Kill the Host of an incarnation whose stop timed out.

        Locally a handler that outlives its stop keeps its thread (Python cannot kill
        one); here its Host is a process Ray can kill, so the handler ends and the
        driver's thread waiting on it is freed. An abandoned incarnation is one whose
        inbox the cell closed while it is still watched (a normal end unwatches first).
        """
        with self._lock:
            watched = list(self._watches.items())
        for ref, (host, ctx) in watched:
            inbox = getattr(getattr(ctx, "_process", None), "inbox", None)
            if inbox is not None and inbox.closed:
                with self._lock:
                    self._watches.pop(ref, None)
                logger.warning(
                    "actor %s: killing the Ray actor of a handler that outlived its stop", ctx.name
                )
                self._kill(host)

    def _watch_loop(self) -> None:
        while not self._closed.is_set():
            self._reap_abandoned()
            with self._lock:
                refs = [*self._watches, *self._flushes]
            if not refs:
                self._closed.wait(WATCH_POLL)
                continue
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=WATCH_POLL)
            except Exception:  # noqa: BLE001 -- Ray is going away; the loop ends with it
                if self._closed.wait(WATCH_POLL):
                    return
                continue
            for ref in ready:
                with self._lock:
                    entry = self._watches.pop(ref, None)
                    flush = self._flushes.pop(ref, None)
                if entry is not None:
                    self._check(ref, *entry)
                if flush is not None:
                    self._flushed(ref, *flush)

    def _check(self, ref: Any, host: Any, ctx: ActorContext) -> None:
        """A watch ended: a lost Host ends its incarnation; one still running is watched again."""
        try:
            stopped = ray.get(ref, timeout=0)
        except RayActorError:
            logger.warning("actor %s: its Ray actor died (its process or node was lost)", ctx.name)
            ctx.stop("ray actor lost: its process or node died")
        except Exception as exc:  # noqa: BLE001 -- any other end of the watch is a loss too
            ctx.stop(f"ray actor lost: {type(exc).__name__}")
        else:
            with self._lock:
                running = any(known is host for known in self._hosts.values())
            if not stopped and running and not self._closed.is_set():
                self._watch(host, ctx)

    def host_names(self) -> list[str]:
        """Return the names of the Hosts alive now (for tests and diagnostics)."""
        with self._lock:
            return sorted(self._hosts)

    def _ours(self) -> list[str]:
        """The named Ray actors of this runtime that Ray still lists."""
        prefix = f"{self.run_id}/"
        return [
            actor["name"]
            for actor in ray.util.list_named_actors(all_namespaces=True)
            if actor["namespace"] == NAMESPACE and actor["name"].startswith(prefix)
        ]

    def _await_gone(self) -> None:
        """Wait (bounded) until Ray lists none of our actors: ``ray.kill`` is asynchronous."""
        deadline = time.monotonic() + GONE_TIMEOUT
        try:
            while (left := self._ours()) and time.monotonic() < deadline:
                time.sleep(0.05)
        except Exception:  # noqa: BLE001 -- Ray is unreachable: nothing more to wait for
            return
        if left:
            logger.warning("Ray still lists %d actors of this runtime: %s", len(left), left)

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Kill every Ray actor this runtime started, then stop using the connection (the
        last runtime using one a runtime made shuts Ray down, and so an owned instance)."""
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            hosts = list(self._hosts.values())
            self._watches.clear()
            self._flushes.clear()
        for host in hosts:
            self._kill(host)
        with contextlib.suppress(Exception):
            ray.get(self._store_host.close.remote(), timeout=STOP_TIMEOUT)
        with contextlib.suppress(Exception):
            ray.kill(self._store_host, no_restart=True)
        self._watcher.join(timeout=5 * WATCH_POLL + 5)
        self.asker.shutdown(wait=False, cancel_futures=True)
        self._await_gone()
        _Connection.release(self._address, self._counted)
