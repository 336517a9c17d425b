"""The exceptions theater-py raises.

Every error the runtime raises is a :class:`TheaterError`. Where a standard
library exception means the same thing, the error subclasses it too, so
``except TimeoutError`` catches a :class:`RequestTimeout`.
"""

from __future__ import annotations

__all__ = [
    "ActorFailed",
    "ActorNameInUse",
    "ActorNotFound",
    "ActorStartError",
    "ActorStopped",
    "CapabilityDenied",
    "ChannelClosed",
    "ChannelRefused",
    "ManifestError",
    "MessageDecodeError",
    "RequestTimeout",
    "StoreError",
    "SupervisorError",
    "TheaterError",
]


class TheaterError(Exception):
    """Base class of every error raised by theater-py."""


class ManifestError(TheaterError, ValueError):
    """A manifest, its ``init_state`` file or a system manifest is invalid.

    Attributes:
        file: the file at fault, when known.
        field: the dotted path of the field at fault (``handler[2].allowed_vars``),
            when known.
    """

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        prefix = ""
        if file is not None:
            prefix = f"{file}: "
        if field is not None:
            prefix += f"{field}: "
        super().__init__(prefix + message)


class CapabilityDenied(TheaterError, PermissionError):
    """An actor used a capability its manifest does not grant.

    Attributes:
        capability: the handler type that would grant it (``"http-client"``).
    """

    def __init__(self, capability: str, detail: str = ""):
        self.capability = capability
        message = f"capability {capability!r} is not granted"
        if detail:
            message += f": {detail}"
        super().__init__(message)


class MessageDecodeError(TheaterError, ValueError):
    """A message's JSON does not match the type the actor expects.

    Attributes:
        path: where the bad field is (``messages[2].content[0].type``), or ``""``
            for the whole message.
        reason: what is wrong there.
    """

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class ActorStartError(TheaterError):
    """An actor could not be started: its class could not be loaded or its ``init`` raised."""


class ActorNameInUse(TheaterError):
    """Another running actor already has this name."""


class ActorNotFound(TheaterError, LookupError):
    """No actor of that name is running."""


class ActorFailed(TheaterError):
    """The actor crashed while handling this message.

    Attributes:
        actor: the actor's name.
        reason: the message of the exception that crashed it.
    """

    def __init__(self, actor: str, reason: str):
        self.actor = actor
        self.reason = reason
        super().__init__(f"actor {actor!r} failed: {reason}")


class ActorStopped(TheaterError):
    """The actor has stopped and will not run again, so the message was not handled."""


class ChannelRefused(TheaterError):
    """The actor refused to open the channel (its ``handle_channel_open`` said no or raised).

    Attributes:
        actor: the actor's name.
        reason: the actor's reason: the message of what it raised, or ``"refused"``.
    """

    def __init__(self, actor: str, reason: str):
        self.actor = actor
        self.reason = reason
        super().__init__(f"actor {actor!r} refused the channel: {reason}")


class ChannelClosed(TheaterError):
    """The caller sent on a channel that is closed (by either side).

    The actor's own ``send`` returns ``False`` instead: a caller may close a channel at
    any moment, and an actor's handler racing that must not crash.
    """


class ReplyEncodeError(TheaterError, TypeError):
    """The actor's reply is not JSON (or not its ``response_type``); the actor keeps running."""


class RequestTimeout(TheaterError, TimeoutError):
    """No reply came within the timeout."""


class StoreError(TheaterError):
    """A content store operation failed (unknown store, missing content or label)."""


class SupervisorError(TheaterError):
    """A supervisor could not start, or a child spec or supervisor flag is invalid."""
