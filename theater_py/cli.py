"""The ``theater-py`` command.

``start`` and ``run`` run actors in the foreground and serve them on the control socket
(see :mod:`theater_py.control`) until SIGINT or SIGTERM (``start`` into a server that
already runs starts the actor there); ``list``, ``request``, ``send``, ``stop``,
``restart`` and ``events`` talk to that process from another shell. ``request`` also runs
one actor in process with ``--manifest``.

Installed packages add commands (the OpenAI proxy adds ``chat``, ``models``,
``mock-openai`` and ``demo``): each is a :class:`Command` declared in the entry point group
``theater_py.commands``. The runtime knows none of them; it imports a plugin's command
only when it is the one chosen.

Exit statuses: 0 success; 1 an error in the runtime or an actor (a start failed, an actor
crashed, a timeout, an error reply, a broken chain); 2 bad usage or input (arguments, JSON,
a missing or invalid file, a component class that does not exist, init data an actor's
config refuses, a message the actor cannot decode); 3 no server running or no such actor;
4 a server already runs on this home; 130 interrupted.

The runtime and the control socket are imported inside the commands that use them, so
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from importlib.metadata import EntryPoint

    from theater_py.control import ControlClient
    from theater_py.runtime import Runtime

__all__ = [
    "COMMAND_GROUP",
    "EXIT_ALREADY_RUNNING",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "Command",
    "CommandError",
    "add_manifest_options",
    "add_timeout_option",
    "ask",
    "build_parser",
    "main",
    "open_stream",
    "print_table",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_FOUND: Final = 3
EXIT_ALREADY_RUNNING: Final = 4
EXIT_INTERRUPTED: Final = 130

COMMAND_GROUP: Final = "theater_py.commands"
"""The entry point group through which installed packages contribute commands."""

logger = logging.getLogger("theater_py.cli")


_LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_EXIT_CODES_HELP: Final = """\
exit status:
  0    success
  1    runtime or actor error (failed start, crash, timeout, error reply, broken chain)
  2    bad usage or input (arguments, JSON, missing or invalid file or init data,
       undecodable message)
  3    no server running, or no such actor
  4    a server already runs on this home
  130  interrupted

environment:
  THEATER_PY_HOME  the home folder of the control socket, events and store
                   (default ~/.theater-py)
"""


_STATUS_BY_ERROR: Final = (
    ("NoServerRunning", EXIT_NOT_FOUND),
    ("ActorNotFound", EXIT_NOT_FOUND),
    ("ServerAlreadyRunning", EXIT_ALREADY_RUNNING),
    ("BadRequest", EXIT_USAGE),
    ("ManifestError", EXIT_USAGE),
    ("MessageDecodeError", EXIT_USAGE),
)
"""The exit status of an error, by the name of its type (or of a base class)."""

_START_WAIT: Final = 90.0
"""Seconds to wait for a server to start an actor (its own limit is 60)."""

# A start that failed on the user's input, not on the runtime: the manifest names no actor
# class, or the actor's init refused its init data (an error named *ConfigError* or a
# ManifestError). The runtime passes an init error's type only in its message.
_BAD_INPUT: Final = re.compile(
    r"^component '[^']*': |failed to start: (?:\w*ConfigError|ManifestError|MessageDecodeError): "
)


class CommandError(Exception):
    """A failure a command reports in one line, with its exit status.

    Attributes:
        status: the exit status.
    """

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        self.status = status
        super().__init__(message)


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    pass


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand an installed package contributes to ``theater-py``.

    A package declares each in the entry point group ``theater_py.commands`` (the entry
    point's name is the command's)::

        [project.entry-points."theater_py.commands"]
        chat = "theater_py_actors.openai_proxy.cli:CHAT"

    It is imported only when it is the chosen command.

    Attributes:
        summary: one line, for ``--help``.
        run: runs the command on the parsed arguments (``--debug`` and ``--home`` among
            them) and returns the exit status; a :class:`CommandError` is printed in one
            line with its status, as any other error.
        add_arguments: adds the command's own arguments to its parser.
        passthrough: the command parses its arguments itself (and answers ``--help``):
            ``run`` gets them unparsed as ``args.argv``, and logging is left to it.
    """

    summary: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    passthrough: bool = False


class _Parser(argparse.ArgumentParser):
    """Reports a usage error in one line, as every other error is reported."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


class _IntermixedParser(_Parser):
    """A command's parser: its positionals may come before, among or after its options.

    ``chat NAME --model M "Hello"`` reads as ``chat --model M NAME "Hello"``; plain
    argparse would take ``NAME`` as the ``PROMPT`` and refuse ``"Hello"``.
    """

    _inner = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._inner:  # parse_known_intermixed_args parses twice through this method
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


class _HeldErrors(logging.Filter):
    """Holds back ERROR lines while actors start, to let them pass only if the start works.

    A start that fails ends in one line of its own, which names the actor and the cause;
    the runtime's log lines of the same failure would only say it twice more.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        self.held.append(record)
        return False


class _BriefFormatter(logging.Formatter):
    """Puts an exception's type and message on the log line instead of its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None:
            error = exc_info[1]
            record = logging.makeLogRecord(
                {
                    **record.__dict__,
                    "msg": f"{record.getMessage()}: {type(error).__name__}: {error}",
                    "args": None,
                    "exc_info": None,
                    "exc_text": None,
                }
            )
        return super().format(record)


# -- entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``theater-py`` command.

    Args:
        argv: the arguments, without the program name; ``sys.argv[1:]`` if omitted.

    Returns:
        The exit status (see the module's docstring).
    """
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(arguments)
    except CommandError as exc:  # a plugin's command that cannot be loaded
        print(f"theater-py: error: {exc}", file=sys.stderr)
        return exc.status
    args, extra = parser.parse_known_args(arguments)
    if getattr(args, "passthrough", False):
        args.argv = extra  # the command parses its own arguments (and answers --help)
        status: int = args.run(args)
        return status
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.debug, server=args.command in ("start", "run"))
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; every failure becomes one line on stderr and a status."""
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read stdout left (`| head`): send the interpreter's last flush nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 -- every failure becomes one line and a status
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"theater-py: error: {_describe(exc)}", file=sys.stderr)
        return _exit_status(exc)
    return status


def _configure_logging(debug: bool, *, server: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if debug:
        level = logging.DEBUG
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    elif server:
        level = logging.INFO
        handler.setFormatter(_BriefFormatter(_LOG_FORMAT))
    else:
        # Warnings as they happen (a proxy's `retrying in 1.7 s: 429 rate limit (attempt 2
        # of 5)`), bare; not errors: the command reports its failure in one line of its
        # own, which the runtime's log of the same failure would only repeat.
        level = logging.WARNING
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(lambda record: record.levelno < logging.ERROR)
    # A no-op when the root logger already has handlers (the CLI run inside a program).
    logging.basicConfig(level=level, handlers=[handler])


def _describe(exc: BaseException) -> str:
    from theater_py.errors import TheaterError

    if isinstance(exc, CommandError | TheaterError):
        return " ".join(str(exc).split("\n"))
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"


def _exit_status(exc: BaseException) -> int:
    from theater_py._protocol import RemoteError

    if isinstance(exc, CommandError):
        return exc.status
    # An error from the server is known by its type's name; one raised here by its classes'.
    if isinstance(exc, RemoteError):
        kinds, message = {exc.type}, exc.message
    else:
        kinds, message = {cls.__name__ for cls in type(exc).__mro__}, str(exc)
    if "ActorStartError" in kinds and _BAD_INPUT.search(message):
        return EXIT_USAGE
    return next((status for kind, status in _STATUS_BY_ERROR if kind in kinds), EXIT_ERROR)


# -- the parser -----------------------------------------------------------------------


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """Build the argument parser of every command (each parsed command names its ``run``).

    Args:
        argv: the arguments to be parsed: the plugin command they choose, if any, is the
            only plugin loaded (the others are listed by name, not imported).

    Raises:
        CommandError: the chosen plugin command cannot be loaded.
    """
    from theater_py import __version__

    parser = _Parser(
        prog="theater-py",
        description="Run theater-py actors and talk to them.",
        epilog=_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser, None)
    common = _IntermixedParser(add_help=False)
    # SUPPRESS: an option given before the command is not reset by the command's default.
    _add_common(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_IntermixedParser
    )

    def command(name: str, run: Callable[[argparse.Namespace], int], summary: str) -> Any:
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary,
            parents=[common],
            epilog=_EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(run=run)
        return sub

    sub = command(
        "start",
        _cmd_start,
        "Start an actor and serve it until SIGINT or SIGTERM; or, when a server already "
        "runs on this home, start it in that server.",
    )
    sub.add_argument(
        "manifest",
        metavar="MANIFEST",
        help="the actor's manifest.toml, or the name of a shipped one (openai-proxy)",
    )
    _add_init(sub)
    sub.add_argument("--name", help="the name to register (default: the manifest's name)")

    sub = command("run", _cmd_run, "Start a supervision tree and serve it until SIGINT or SIGTERM.")
    sub.add_argument("system", metavar="SYSTEM", help="the system manifest (system.toml)")
    sub.add_argument(
        "--init",
        metavar="CHILD=FILE|JSON",
        action="append",
        default=[],
        help="init data merged over a child's own, by child name (repeatable)",
    )
    sub.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run every actor on a Ray cluster (needs theater-py[ray]): 'local' starts one "
        "for this run, 'auto' joins RAY_ADDRESS's or this machine's, or a cluster's address "
        "(ray://host:10001)",
    )

    sub = command("status", _cmd_status, "Say whether a server runs, and its pid.")

    sub = command("list", _cmd_list, "List the running actors.")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sub = command("request", _cmd_request, "Send a JSON request and print the JSON reply.")
    sub.add_argument("name", metavar="NAME", nargs="?", help="the actor (omit with --manifest)")
    sub.add_argument("message", metavar="MESSAGE", help="JSON text, @FILE, or - for stdin")
    sub.add_argument(
        "--stream",
        action="store_true",
        help="open a channel with MESSAGE and print its messages as JSON lines as they come",
    )
    add_manifest_options(sub)
    add_timeout_option(sub, 60.0)

    sub = command("send", _cmd_send, "Queue a JSON message without waiting for a reply.")
    sub.add_argument("name", metavar="NAME", help="the actor")
    sub.add_argument("message", metavar="MESSAGE", help="JSON text, @FILE, or - for stdin")

    sub = command("stop", _cmd_stop, "Stop an actor for good (it is not restarted).")
    sub.add_argument("name", metavar="NAME", help="the actor")
    add_timeout_option(sub, 10.0)

    sub = command(
        "restart",
        _cmd_restart,
        "Stop an actor (if it runs) and start it again from its manifest, with its init.",
    )
    sub.add_argument("name", metavar="NAME", help="the actor (running, or stopped by `stop`)")
    add_timeout_option(sub, 10.0)

    sub = command("events", _cmd_events, "Print an actor's event chain.")
    sub.add_argument("name", metavar="NAME", help="the actor")
    sub.add_argument("--verify", action="store_true", help="check the chain's hashes and links")
    sub.add_argument(
        "--follow", action="store_true", help="keep printing new events until the actor stops"
    )
    sub.add_argument("--json", action="store_true", help="print each event as a JSON line")

    _add_plugin_commands(commands, common, _chosen_command(argv or ()))
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is no option nor ``--home``'s value."""
    words = iter(argv)
    for word in words:
        if word == "--home":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _add_plugin_commands(
    commands: Any, common: argparse.ArgumentParser, chosen: str | None
) -> None:
    """Add the commands installed packages contribute through :data:`COMMAND_GROUP`.

    Only the chosen one is imported; the others are listed by name, with the summary
    read from their source (:mod:`theater_py._plugin_summary`), so ``theater-py --help``
    imports no plugin.
    """
    for entry, rivals in _plugin_entries():
        if entry.name in commands.choices:
            continue  # a built-in command
        if rivals:
            clash = f"the command {entry.name!r} is installed by {rivals}; uninstall one of them"
            if entry.name == chosen:
                raise CommandError(clash)
            commands.add_parser(entry.name, help=f"(unusable: {clash})", add_help=False)
            continue
        if entry.name != chosen:
            summary = None
            if chosen is None:  # the list of commands may be shown: read each one's line
                from theater_py._plugin_summary import command_summary

                summary = command_summary(entry.value)
            package = entry.value.partition(":")[0]
            commands.add_parser(
                entry.name,
                help=summary or f"(from {package}; see {entry.name} --help)",
                add_help=False,
            )
            continue
        plugin = _load_command(entry.name, entry.load)
        if plugin.passthrough:
            sub = commands.add_parser(entry.name, help=plugin.summary, add_help=False)
        else:
            sub = commands.add_parser(
                entry.name,
                help=plugin.summary,
                description=plugin.summary,
                parents=[common],
                epilog=_EXIT_CODES_HELP,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            try:
                plugin.add_arguments(sub)
            except Exception as exc:  # noqa: BLE001 -- as a plugin that cannot load
                raise CommandError(
                    f"the command {entry.name!r} cannot be loaded: it cannot add its options: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        sub.set_defaults(run=plugin.run, passthrough=plugin.passthrough)


def _plugin_entries() -> list[tuple[EntryPoint, str]]:
    """The entry points of :data:`COMMAND_GROUP`, one per name, each with the distributions
    that claim the same name, if more than one does (``""`` if not).

    Which of two installed packages would win must not depend on the order of
    ``sys.path``: a name two distributions claim is unusable, and says who claims it
    (sorted). One distribution seen twice (on two ``sys.path`` entries) claims it once.
    """
    from importlib.metadata import entry_points

    claims: dict[str, dict[str, EntryPoint]] = {}
    for entry in entry_points(group=COMMAND_GROUP):
        dist = entry.dist.name if entry.dist is not None else entry.value.partition(":")[0]
        claims.setdefault(entry.name, {}).setdefault(f"{dist} ({entry.value})", entry)
    result = []
    for by_owner in claims.values():
        owners = sorted(by_owner)
        rivals = " and ".join(owners) if len(owners) > 1 else ""
        result.append((by_owner[owners[0]], rivals))
    return result


def _load_command(name: str, load: Callable[[], Any]) -> Command:
    try:
        plugin = load()
    except Exception as exc:  # noqa: BLE001 -- a broken plugin is one line, not a traceback
        raise CommandError(
            f"the command {name!r} cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(plugin, Command):
        raise CommandError(
            f"the command {name!r} is a {type(plugin).__name__}, not a theater_py.cli.Command"
        )
    return plugin


def _add_common(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if default is None else default,
        help="log everything and show tracebacks",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=default,
        help="the home folder (default: $THEATER_PY_HOME, else ~/.theater-py)",
    )


def _add_init(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--init",
        metavar="FILE|JSON",
        help="init data: inline JSON, a JSON file, or a shipped one (openai-proxy:init-moonshot)",
    )


def add_manifest_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--manifest M`` and ``--init``, to start the actor in process (see :func:`ask`)."""
    parser.add_argument(
        "--manifest", metavar="M", help="start this actor in process for the one request"
    )
    _add_init(parser)


def _seconds(text: str) -> float:
    """Read a wait in seconds that a lock or a queue can use: finite, positive, not huge."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < seconds <= threading.TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(
            f"expected seconds above 0 and at most {threading.TIMEOUT_MAX:.0f}, got {text!r}"
        )
    return seconds


def add_timeout_option(parser: argparse.ArgumentParser, default: float) -> None:
    """Add ``--timeout`` (seconds), with its default."""
    parser.add_argument(
        "--timeout", type=_seconds, default=default, help="seconds to wait (default: %(default)s)"
    )


# -- reading arguments --------------------------------------------------------------------


def _json_argument(text: str, what: str) -> Any:
    """Read a JSON value given inline, as ``@FILE`` or as ``-`` (standard input)."""
    if text == "-":
        return _parse_json(sys.stdin.read(), "standard input")
    if text.startswith("@"):
        return _parse_json(_read_file(text[1:], what), text[1:])
    return _parse_json(text, what, hint=text.strip().isidentifier())


def _init_argument(text: str | None) -> Any:
    """Read ``--init``: inline JSON when it starts with ``{`` or ``[``, else a file: a
    path, or ``MANIFEST:FILE``, a JSON file an installed package ships beside a manifest."""
    if text is None:
        return None
    if text.lstrip().startswith(("{", "[")):
        return _parse_json(text, "--init")
    from theater_py.registry import resolve_shipped_file

    shipped = resolve_shipped_file(text, field="--init")
    if shipped is not None:
        return _parse_json(_read_file(os.fspath(shipped), "--init"), text)
    return _json_argument(text if text.startswith("@") or text == "-" else f"@{text}", "--init")


def _read_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommandError(f"{what}: file not found: {path}", EXIT_USAGE) from None
    except UnicodeDecodeError:
        raise CommandError(f"{what}: {path} is not UTF-8 text", EXIT_USAGE) from None
    except OSError as exc:
        raise CommandError(f"{what}: cannot read {path}: {exc.strerror}", EXIT_USAGE) from None


def _parse_json(text: str, source: str, *, hint: bool = False) -> Any:
    # The message never quotes the text: init data may hold a secret.
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"{source} is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        if hint:
            message += """; a JSON string needs quotes, as in '"ListModels"'"""
        raise CommandError(message, EXIT_USAGE) from None


# -- serving ------------------------------------------------------------------------------


def _cmd_start(args: argparse.Namespace) -> int:
    from theater_py._protocol import NoServerRunning

    init = _init_argument(args.init)
    client = _client(args)
    try:
        server = client.ping()
    except NoServerRunning:
        pass  # serve it here, in the foreground
    else:
        from theater_py.registry import resolve_manifest

        # Into the running server: it reads the manifest, so it gets an absolute path (a
        # shipped manifest's name is resolved here, where the command's packages are).
        result = client.call(
            "start",
            manifest=os.fspath(resolve_manifest(args.manifest)),
            init=init,
            name=args.name,
            read_timeout=_START_WAIT,
        )
        print(f"started {result['name']} ({result['id']}) in the server (pid {server['pid']})")
        return EXIT_OK

    def start(runtime: Runtime) -> None:
        handle = runtime.start_actor(args.manifest, init, name=args.name)
        logger.info("started actor %s (%s) from %s", handle.name, handle.id, args.manifest)

    return _serve(args.home, start)


def _cmd_run(args: argparse.Namespace) -> int:
    init: dict[str, Any] = {}
    for item in args.init:
        child, equals, value = item.partition("=")
        if not child or not equals:
            # Not quoted: the value may hold a secret.
            raise CommandError("--init expects CHILD=FILE|JSON: a child's name, then =", EXIT_USAGE)
        init[child] = _init_argument(value)

    def start(runtime: Runtime) -> None:
        supervisor = runtime.start_system(args.system, init)
        children = ", ".join(child.name for child in supervisor.which_children())
        logger.info("started system %s from %s: %s", supervisor.name, args.system, children)

    return _serve(args.home, start, ray_address=args.ray)


def _serve(
    home: Path | None, start: Callable[[Runtime], None], *, ray_address: str | None = None
) -> int:
    """Start actors, serve them until SIGINT or SIGTERM, then shut down newest first."""
    import signal
    import threading

    from theater_py.control import ControlServer
    from theater_py.runtime import Runtime

    received: list[int] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    runtime = Runtime(home=home, ray_address=ray_address)  # with Ray: connects, or fails here
    # Installed before any actor starts, so a signal that arrives meanwhile is not lost.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = ControlServer(runtime)
    try:
        server.claim()  # before any actor starts: a second server must do nothing
        with _errors_held_while_starting():
            start(runtime)
        server.start()  # after: a client that finds the socket finds the actors
        logger.info("running (pid %d); stop with Ctrl-C or SIGTERM", os.getpid())
        stop.wait()
        logger.info("%s received: shutting down", signal.Signals(received[0]).name)
    finally:
        # A second Ctrl-C now interrupts the shutdown.
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
        runtime.shutdown()
        server.close()
    logger.info("stopped")
    return EXIT_OK


@contextlib.contextmanager
def _errors_held_while_starting() -> Iterator[None]:
    """Drop the log's ERROR lines if the block fails (its error says it), else write them."""
    root = logging.getLogger()
    if root.isEnabledFor(logging.DEBUG):
        yield  # --debug: every line, as it happens
        return
    holds = {handler: _HeldErrors() for handler in root.handlers}
    for handler, hold in holds.items():
        handler.addFilter(hold)
    try:
        yield
    finally:
        for handler, hold in holds.items():
            handler.removeFilter(hold)
    for handler, hold in holds.items():
        for record in hold.held:
            handler.handle(record)


# -- talking to a server ------------------------------------------------------------------


def _client(args: argparse.Namespace) -> ControlClient:
    from theater_py.control import ControlClient

    return ControlClient(args.home)


def ask(args: argparse.Namespace, message: Any, timeout: float, *, what: str | None = None) -> Any:
    """Send one JSON request to the named actor, or to one started in process.

    For a command with the arguments ``NAME`` (optional) and those of
    :func:`add_manifest_options`.

    Args:
        args: the parsed arguments: ``name``, ``manifest``, ``init``, ``home``, ``command``.
        message: the JSON request.
        timeout: seconds to wait for the reply.
        what: the positional argument after ``NAME`` (``"PROMPT"``), if the command has
            one: a lone word was read as it, and the error says so.

    Returns:
        The JSON reply.

    Raises:
        CommandError: no NAME and no ``--manifest``, or both, or ``--init`` without
            ``--manifest`` (status 2).
    """
    if args.manifest is not None:
        if args.name is not None:
            raise CommandError("give an actor NAME or --manifest, not both", EXIT_USAGE)
        from theater_py.runtime import Runtime

        init = _init_argument(args.init)
        with Runtime(home=args.home) as runtime:
            return runtime.start_actor(args.manifest, init).request_json(message, timeout)
    if args.init is not None:
        raise CommandError("--init goes with --manifest", EXIT_USAGE)
    if args.name is None:
        if what is not None:  # one word was given: it was read as the PROMPT or MESSAGE
            raise CommandError(
                f"{args.command}: give the actor's NAME and the {what}, as in "
                f"`theater-py {args.command} NAME {what}` (or --manifest M and the {what})",
                EXIT_USAGE,
            )
        raise CommandError(
            f"{args.command}: give the actor's NAME, or --manifest to start one here", EXIT_USAGE
        )
    return _client(args).request(args.name, message, timeout)


def _cmd_status(args: argparse.Namespace) -> int:
    info = _client(args).ping()
    print(f"theater-py {info['version']} runs as pid {info['pid']} in {info['home']}")
    writing = info.get("event_database")
    if writing and writing["error"]:
        print(f"event database: cannot write ({writing['error']}); {writing['lost']} events lost")
    elif writing and writing["lost"]:
        print(f"event database: writes again; {writing['lost']} events were lost")
    return EXIT_OK


def _chain_state(chain: dict[str, Any] | None) -> str:
    """The CHAIN column: memory, saved, or what the saved chain lost."""
    if not chain or not chain["saved"]:
        return "memory"
    if chain["error"]:
        return "failing"
    return f"lost {chain['lost']}" if chain["lost"] else "saved"


def _cmd_list(args: argparse.Namespace) -> int:
    actors = _client(args).list_actors()
    if args.json:
        print(json.dumps(actors, indent=2))
        return EXIT_OK
    rows = [
        (
            a["name"],
            a["id"],
            a["status"],
            str(a["restarts"]),
            _duration(a["uptime_s"]),
            str(a["queued"]),
            _chain_state(a.get("chain")),
        )
        for a in actors
    ]
    header = ("NAME", "ID", "STATUS", "RESTARTS", "UPTIME", "QUEUED", "CHAIN")
    print_table(header, rows, "<<<>>><")
    return EXIT_OK


def _cmd_request(args: argparse.Namespace) -> int:
    message = _json_argument(args.message, "MESSAGE")
    if args.stream:
        return _stream(args, message)
    reply = ask(args, message, args.timeout, what="MESSAGE")
    print(json.dumps(reply, indent=2, ensure_ascii=False))
    return EXIT_OK


@contextlib.contextmanager
def open_stream(args: argparse.Namespace, message: Any, *, missing: str) -> Iterator[Iterable[Any]]:
    """A channel to the named actor, or to one started in process (as :func:`ask`).

    Args:
        args: the parsed ``NAME``, ``--manifest``, ``--init``, ``--home`` and ``--timeout``.
        message: the JSON message that opens the channel.
        missing: the error's text when neither ``NAME`` nor ``--manifest`` is given.

    Raises:
        CommandError: no NAME and no ``--manifest``, or both, or ``--init`` without
            ``--manifest`` (status 2).
    """
    if args.manifest is not None and args.name is not None:
        raise CommandError("give an actor NAME or --manifest, not both", EXIT_USAGE)
    if args.manifest is None and args.init is not None:
        raise CommandError("--init goes with --manifest", EXIT_USAGE)
    if args.manifest is None and args.name is None:
        raise CommandError(missing, EXIT_USAGE)
    with contextlib.ExitStack() as stack:
        if args.manifest is not None:
            from theater_py.runtime import Runtime

            runtime = stack.enter_context(Runtime(home=args.home))
            handle = runtime.start_actor(args.manifest, _init_argument(args.init))
            yield stack.enter_context(handle.open_channel_json(message, args.timeout))
        else:
            yield stack.enter_context(_client(args).stream(args.name, message, args.timeout))


def _stream(args: argparse.Namespace, message: Any) -> int:
    """Print a channel's messages as they come, one canonical JSON line each.

    Canonical (sorted keys, no spaces), so the output's SHA-256 is the ``to_caller``
    digest the actor's ``channel-close`` event records.
    """
    missing = "request --stream: give the actor's NAME and the MESSAGE (or --manifest M)"
    with open_stream(args, message, missing=missing) as messages:
        for value in messages:
            line = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            print(line, flush=True)
    return EXIT_OK


def _cmd_send(args: argparse.Namespace) -> int:
    _client(args).send(args.name, _json_argument(args.message, "MESSAGE"))
    return EXIT_OK


def _cmd_restart(args: argparse.Namespace) -> int:
    result = _client(args).call(
        "restart", actor=args.name, timeout=args.timeout, read_timeout=args.timeout + _START_WAIT
    )
    print(f"restarted {result['name']} ({result['id']})")
    return EXIT_OK


def _cmd_stop(args: argparse.Namespace) -> int:
    if not _client(args).stop(args.name, args.timeout):
        raise CommandError(f"actor {args.name!r} did not finish within {args.timeout} s")
    print(f"stopped {args.name}")
    return EXIT_OK


def _cmd_events(args: argparse.Namespace) -> int:
    with _client(args).events(args.name, follow=args.follow, verify=args.verify) as stream:
        try:
            for index, event in enumerate(stream):
                if args.json:
                    print(json.dumps(event, ensure_ascii=False), flush=args.follow)
                else:
                    print(_event_line(index, event), flush=args.follow)
        except KeyboardInterrupt:
            if not args.follow:
                raise  # Ctrl-C is how a follow ends; anywhere else it interrupts
            return EXIT_OK  # the stream ended early: no verdict on the whole chain
        summary = stream.summary or {}
    if not args.verify:
        return EXIT_OK
    # The server checks the chain itself (what `handle.verify()` says): the streamed
    # events carry no numbers, so a saved chain's recorded loss would read as a break.
    verification = summary.get("verification")
    if not isinstance(verification, dict):
        raise CommandError("the server did not verify the chain (is it an older theater-py?)")
    missing = verification.get("missing") or []
    if missing and verification.get("first_broken") == missing[0][0]:
        # Nothing broken, but a run of events was lost (and recorded as lost).
        raise CommandError(f"the chain is incomplete: {verification.get('reason')}")
    if not verification.get("ok"):
        raise CommandError(f"the chain is broken: {verification.get('reason')}")
    print(f"chain verified: {verification.get('checked')} events", file=sys.stderr)
    return EXIT_OK


def _event_line(index: int, event: dict[str, Any]) -> str:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{index:>4}  {stamp}  {event['event_type']:<18}  {event['description']}"


# -- output -------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> None:
    """Print rows under headers, in columns aligned left (``<``) or right (``>``)."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    for row in (headers, *rows):
        cells = [
            cell.ljust(width) if side == "<" else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        print("  ".join(cells).rstrip())
