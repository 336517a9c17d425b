"""The OpenAI proxy's ``theater-py`` commands: ``chat``, ``models``, ``mock-openai``, ``demo``.

Each is a :class:`theater_py.cli.Command`, declared in ``pyproject.toml``'s entry point
group ``theater_py.commands``; ``theater-py`` imports this module only to run one of them.
``chat`` and ``models`` talk to a proxy in a running server (``NAME``) or start one in
process (``--manifest openai-proxy``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TypeVar

from theater_py.cli import (
    EXIT_OK,
    Command,
    CommandError,
    add_manifest_options,
    add_timeout_option,
    ask,
    open_stream,
    print_table,
)

__all__ = ["CHAT", "DEMO", "MOCK_OPENAI", "MODELS"]

_T = TypeVar("_T")


def _chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", nargs="?", help="the proxy (omit with --manifest)")
    parser.add_argument("prompt", metavar="PROMPT", help="the user's message")
    parser.add_argument("--model", default="", help="the model (default: the proxy's)")
    parser.add_argument("--system", help="the system prompt")
    parser.add_argument("--max-tokens", type=int, default=1024, help="default: %(default)s")
    parser.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        help="answer all at once (default: print the tokens as they arrive)",
    )
    add_manifest_options(parser)
    add_timeout_option(parser, 300.0)


def _chat(args: argparse.Namespace) -> int:
    from theater_py import serde
    from theater_py_actors.genai_types import (
        Completion,
        CompletionRequest,
        GenerateCompletion,
        Message,
        ProxyRequest,
        Text,
        ToolUse,
    )

    request = CompletionRequest(
        model=args.model,
        messages=[Message.user(args.prompt)],
        max_tokens=args.max_tokens,
        system=args.system,
    )
    message = serde.unstructure(GenerateCompletion(request), ProxyRequest)
    completion = _chat_streamed(args, message) if args.stream else None
    streamed = completion is not None
    if completion is None:
        reply = ask(args, message, args.timeout, what="PROMPT")
        completion = _proxy_reply(args, reply, Completion).completion
    for part in completion.content:
        if isinstance(part, Text):
            if not streamed:
                print(part.text)
        elif isinstance(part, ToolUse):
            arguments = json.dumps(part.input, ensure_ascii=False)
            print(f"tool call {part.name} (id {part.id}): {arguments}")
    usage = completion.usage
    tokens = f"{usage.input_tokens} input + {usage.output_tokens} output tokens"
    summary = f"{completion.model}: {tokens}"
    if usage.cost_usd is not None:
        summary += f", ${usage.cost_usd:.6f}"
    print(summary, file=sys.stderr)
    return EXIT_OK


def _chat_streamed(args: argparse.Namespace, message: Any) -> Any:
    """Print the completion's text as its deltas arrive; return the final completion, or
    ``None`` if the actor does not stream (it refused the channel: ask it plainly)."""
    from theater_py import ChannelRefused
    from theater_py._protocol import RemoteError

    try:
        return _print_stream(args, message)
    except ChannelRefused:
        return None
    except RemoteError as error:
        if error.type != "ChannelRefused":
            raise
        return None


def _print_stream(args: argparse.Namespace, message: Any) -> Any:
    from theater_py import serde
    from theater_py.errors import MessageDecodeError
    from theater_py_actors.genai_types import (
        Completion,
        Delta,
        ErrorResponse,
        ProxyStreamMessage,
        Retrying,
    )

    who = args.name or args.manifest
    printed = False
    missing = (
        f"{args.command}: give the actor's NAME and the PROMPT, as in "
        f"`theater-py {args.command} NAME PROMPT` (or --manifest M and the PROMPT)"
    )
    with open_stream(args, message, missing=missing) as messages:
        for value in messages:
            try:
                item = serde.structure(value, ProxyStreamMessage)
            except MessageDecodeError as exc:
                raise CommandError(f"{who} did not stream as an OpenAI proxy does: {exc}") from None
            if isinstance(item, Delta):
                sys.stdout.write(item.text)
                sys.stdout.flush()
                printed = True
            elif isinstance(item, Retrying) and args.manifest is None:
                # A proxy in a running server: its log is the server's. One started here
                # (--manifest) has logged this line on our stderr already.
                print(item.line(), file=sys.stderr, flush=True)
            elif isinstance(item, Completion | ErrorResponse):
                if printed:
                    print()  # end the streamed text's line
                if isinstance(item, ErrorResponse):
                    raise CommandError(f"{who}: {item.error}")
                return item.completion
    raise CommandError(f"{who} closed the stream without a completion")


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", nargs="?", help="the proxy (omit with --manifest)")
    parser.add_argument(
        "--live",
        action="store_true",
        help="ask the provider's GET /models, described from the catalog (else the catalog alone)",
    )
    add_manifest_options(parser)
    add_timeout_option(parser, 60.0)


def _models(args: argparse.Namespace) -> int:
    from theater_py_actors.genai_types import ModelList

    message: Any = {"ListModels": {"live": True}} if args.live else "ListModels"
    response = _proxy_reply(args, ask(args, message, args.timeout), ModelList)

    def price(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    rows = [
        (
            model.id,
            f"{model.max_tokens:,}",
            price(model.pricing.input_cost_per_million_tokens if model.pricing else None),
            price(model.pricing.output_cost_per_million_tokens if model.pricing else None),
        )
        for model in response.models
    ]
    print_table(("MODEL", "CONTEXT", "INPUT $/1M", "OUTPUT $/1M"), rows, "<>>>")
    return EXIT_OK


def _proxy_reply(args: argparse.Namespace, reply: Any, expected: type[_T]) -> _T:
    """Decode a proxy's reply; raise its ``Error`` reply, or any other kind, in one line."""
    from theater_py import serde
    from theater_py.errors import MessageDecodeError
    from theater_py_actors.genai_types import ErrorResponse, ProxyResponse

    who = args.name or args.manifest
    try:
        response = serde.structure(reply, ProxyResponse)
    except MessageDecodeError as exc:
        raise CommandError(f"{who} did not answer as an OpenAI proxy does: {exc}") from None
    if isinstance(response, ErrorResponse):
        # The proxy's message already reads "kind: provider message (HTTP n, k attempts)".
        raise CommandError(f"{who}: {response.error}")
    if not isinstance(response, expected):
        raise CommandError(f"{who} answered with {type(response).__name__}")
    return response


def _mock_openai(args: argparse.Namespace) -> int:
    from theater_py_actors.openai_proxy.simulator import main

    return main(args.argv)


def _demo(args: argparse.Namespace) -> int:
    from theater_py_actors.openai_proxy import demo

    return demo.main()


CHAT = Command(
    summary="Ask an OpenAI proxy actor one question.",
    run=_chat,
    add_arguments=_chat_arguments,
)
MODELS = Command(
    summary="List the models an OpenAI proxy actor serves.",
    run=_models,
    add_arguments=_models_arguments,
)
MOCK_OPENAI = Command(
    summary="Serve an offline OpenAI-compatible API (see mock-openai --help).",
    run=_mock_openai,
    passthrough=True,
)
DEMO = Command(
    summary="Run the offline demo: the OpenAI proxy under a supervisor, against a simulator.",
    run=_demo,
)
