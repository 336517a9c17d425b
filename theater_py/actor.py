"""The base class of every theater-py actor: the plugin contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final

if TYPE_CHECKING:
    import concurrent.futures

    from theater_py.channel import ActorChannel
    from theater_py.context import ActorContext
    from theater_py.errors import MessageDecodeError

__all__ = ["IGNORE", "Actor"]

IGNORE: Final = "ignore"
"""What :meth:`Actor.init` returns to decline its start (OTP's ``ignore``): no
process runs, the supervisor keeps the spec with none (a ``temporary`` child's is
dropped), and :meth:`~theater_py.Supervisor.restart_child` may try it again."""


class Actor:
    """Subclass this to write an actor; a manifest's ``component`` names the subclass.

    The runtime makes one instance per incarnation: a fresh instance on start and
    on every restart, each handed the same merged init state. An instance only
    ever runs on its actor's own thread, one message at a time, so it needs no
    locks for its own attributes.

    Anything raised out of :meth:`init`, :meth:`handle_request` or
    :meth:`handle_send` is a crash ("let it crash"): the caller of that message
    gets :class:`~theater_py.errors.ActorFailed`, the event is recorded, and the
    actor's supervisor decides whether a new incarnation starts. Errors that are
    part of the protocol (an upstream API refused the request) belong in the
    reply instead.
    """

    request_type: ClassVar[Any] = None
    """The type incoming request and send JSON is decoded into (an attrs class or a
    union registered with :mod:`theater_py.serde`); ``None`` passes plain JSON values."""

    response_type: ClassVar[Any] = None
    """The type of replies, used to encode them as JSON for ``request_json`` callers;
    ``None`` returns replies as they are."""

    def init(self, ctx: ActorContext, state: Any) -> Any:
        """Set the actor up; runs before any message, on start and on every restart.

        Args:
            ctx: the actor's capabilities.
            state: the manifest's ``init_state`` merged with the caller's init data
                (a private copy: changing it does not change what a restart gets).

        Returns:
            Nothing, or :data:`IGNORE` to decline the start: the incarnation ends at
            once and messages sent to the actor fail with ``ActorStopped``.

        Raises:
            Exception: any exception fails the start: ``start_actor`` raises
                :class:`~theater_py.errors.ActorStartError` with its message.
        """

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        """Answer one request.

        Returns:
            The reply, or a :class:`concurrent.futures.Future` of it: the runtime
            answers the caller when the future resolves and hands the actor its next
            message meanwhile, so a slow reply never blocks the mailbox.
        """
        raise NotImplementedError(f"{type(self).__name__} does not handle requests")

    channel_type: ClassVar[Any] = None
    """The type of the messages the actor sends on channels, used to encode them as JSON
    for ``open_channel_json`` callers (and the chain's digest); ``None`` sends JSON values
    as they are. Messages from the caller, and the open, decode into ``request_type``."""

    channel_buffer: ClassVar[int] = 64
    """How many messages a channel holds that its caller has not read yet; past it the
    actor's :meth:`ActorChannel.send <theater_py.ActorChannel.send>` blocks (backpressure)."""

    def handle_channel_open(
        self, ctx: ActorContext, channel: ActorChannel, message: Any
    ) -> bool | concurrent.futures.Future[bool]:
        """Accept or refuse a channel a caller opens with ``message``.

        Keep ``channel`` to stream into it (:meth:`~theater_py.ActorChannel.send`, from
        any thread) and to close it. Sending more than ``channel_buffer`` messages from
        here blocks the actor: the caller reads only once this returns ``True``.

        Returns:
            ``True`` to accept, ``False`` to refuse (the caller gets
            :class:`~theater_py.errors.ChannelRefused`), or a future of either: the
            actor handles its next message meanwhile.

        Raises:
            Exception: refuses the channel, with the exception's message as the reason
                (a refusal, not a crash). The default refuses every channel.
        """
        raise NotImplementedError(f"{type(self).__name__} does not accept channels")

    def handle_channel_message(
        self, ctx: ActorContext, channel: ActorChannel, message: Any
    ) -> None:
        """Handle one message the caller sent on an open channel; the default ignores it."""

    def handle_channel_close(self, ctx: ActorContext, channel: ActorChannel) -> None:
        """Runs when the caller closes a channel (not when the actor closes it itself)."""

    def handle_send(self, ctx: ActorContext, message: Any) -> None:
        """Handle one fire-and-forget message; the default ignores it."""

    def on_decode_error(self, ctx: ActorContext, error: MessageDecodeError) -> Any:
        """Choose the reply to a request whose JSON does not decode into ``request_type``.

        The default re-raises, so the caller gets the
        :class:`~theater_py.errors.MessageDecodeError`; an actor whose protocol has an
        error reply returns that instead. Either way the actor keeps running.
        """
        raise error

    def on_stop(self, ctx: ActorContext) -> None:
        """Release what :meth:`init` acquired; runs when an incarnation ends.

        It runs after a graceful stop and also after a crash (before any restart), so
        thread pools and connections never leak across restarts. Exceptions raised
        here are logged and otherwise ignored.
        """
