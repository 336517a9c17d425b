"""theater-py: an Erlang-style actor runtime for Python, after Theater.

Start an actor from its manifest, talk to it through its handle::

    from theater_py import start_actor

    handle = start_actor("openai-proxy", {"config": {"default_model": "gpt-4o"}})  # or a path
    print(handle.request_json("ListModels"))
    handle.stop()
"""

from __future__ import annotations

import logging

from theater_py.actor import IGNORE, Actor
from theater_py.channel import ActorChannel, Channel
from theater_py.context import ActorContext
from theater_py.errors import (
    ActorFailed,
    ActorNameInUse,
    ActorNotFound,
    ActorStartError,
    ActorStopped,
    CapabilityDenied,
    ChannelClosed,
    ChannelRefused,
    ManifestError,
    MessageDecodeError,
    ReplyEncodeError,
    RequestTimeout,
    StoreError,
    SupervisorError,
    TheaterError,
)
from theater_py.handle import DEFAULT_TIMEOUT, ActorHandle, TypedHandle
from theater_py.runtime import ActorInfo, Runtime, default_runtime, start_actor
from theater_py.supervisor import (
    Backoff,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    Supervisor,
    SupervisorFlags,
    SupervisorSpec,
    check_childspecs,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "IGNORE",
    "Actor",
    "ActorChannel",
    "ActorContext",
    "ActorFailed",
    "ActorHandle",
    "ActorInfo",
    "ActorNameInUse",
    "ActorNotFound",
    "ActorStartError",
    "ActorStopped",
    "Backoff",
    "CapabilityDenied",
    "Channel",
    "ChannelClosed",
    "ChannelRefused",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ManifestError",
    "MessageDecodeError",
    "ReplyEncodeError",
    "RequestTimeout",
    "Runtime",
    "StoreError",
    "Supervisor",
    "SupervisorError",
    "SupervisorFlags",
    "SupervisorSpec",
    "TheaterError",
    "TypedHandle",
    "check_childspecs",
    "default_runtime",
    "start_actor",
]

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
