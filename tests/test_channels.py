"""Channels: a caller and an actor streaming to each other, and every way one ends."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import channel_actors
from tests.channel_actors import Tick, notes
from theater_py import (
    ActorFailed,
    ActorHandle,
    ActorStopped,
    Channel,
    ChannelClosed,
    ChannelRefused,
    MessageDecodeError,
    RequestTimeout,
    Runtime,
)
from theater_py.cli import main
from theater_py.control import ControlClient, ControlServer, RemoteError

WAIT = 10.0


pytestmark = pytest.mark.usefixtures("channel_log")


@pytest.fixture
def start(runtime: Runtime, tmp_path: Path) -> Callable[..., ActorHandle]:
    def start(component: str = "Streamer", name: str | None = None) -> ActorHandle:
        if ":" not in component:
            component = f"tests.channel_actors:{component}"
        actor = name or component.rpartition(":")[2].lower()
        path = tmp_path / f"{actor}.toml"
        path.write_text(f'name = "{actor}"\nversion = "0.1.0"\ncomponent = "{component}"\n')
        return runtime.start_actor(path)

    return start


def gate(name: str) -> threading.Event:
    event = threading.Event()
    channel_actors.GATES[name] = event
    return event


def wait_for(predicate: Callable[[], Any]) -> Any:
    """Wait (bounded) for something another thread does."""
    done = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        value = predicate()
        if value:
            return value
        done.wait(0.01)
    raise AssertionError("timed out waiting")


def channel_events(handle: ActorHandle, kind: str) -> list[Any]:
    return [event.data for event in handle.events() if event.event_type == kind]


# -- streaming -------------------------------------------------------------------------------


def test_messages_arrive_in_order_and_iteration_ends_when_the_actor_closes(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    with handle.open_channel({"count": 50}, timeout=WAIT) as channel:
        assert isinstance(channel, Channel)
        received = list(channel)
    assert received == [{"i": i} for i in range(50)]
    assert channel.closed
    assert notes("closed by caller") == []  # the actor closed it: its close hook is not called


def test_typed_messages_go_as_objects_and_as_json_to_json_callers(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start("Ticker")
    with handle.open_channel("go", timeout=WAIT) as channel:
        assert list(channel) == [Tick(0), Tick(1), Tick(2)]
    with handle.open_channel_json("go", timeout=WAIT) as channel:
        assert list(channel) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_the_caller_sends_and_the_actor_answers_on_the_same_channel(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    with handle.open_channel_json({"watch": True}, timeout=WAIT) as channel:
        messages = iter(channel)
        assert next(messages) == {"watching": True}
        channel.send("hello")
        assert next(messages) == {"echo": "hello"}
        channel.send("unencodable")
        channel.send("close")
        assert list(messages) == []  # the actor closed it
        with pytest.raises(ChannelClosed):
            channel.send("too late")
    ids = {item[1] for item in notes("open")}
    assert notes("send refused") == [("send refused", *ids, "ReplyEncodeError")]
    assert notes("send after close refused") == [("send after close refused", *ids)]
    wait_for(lambda: notes("producer saw closed"))


def test_a_message_racing_the_callers_close_is_handled_without_a_crash(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    channel = handle.open_channel({"watch": True}, timeout=WAIT)
    release = gate("busy")
    handle.send({"wait": "busy"})
    channel.send("hello")  # handled after the close: its echo finds the channel closed
    channel.close()
    release.set()
    wait_for(lambda: notes("closed by caller"))
    assert [
        item[0] for item in channel_actors.LOG if item[0] in ("message", "closed by caller")
    ] == [
        "message",
        "closed by caller",
    ]
    assert handle.request("ping", timeout=WAIT) == "ok"
    assert len(notes("init")) == 1  # no crash
    [closed] = channel_events(handle, "channel-close")
    assert closed["to_actor"]["count"] == 1


# -- backpressure and timeouts ---------------------------------------------------------------


def test_a_producer_blocks_on_a_full_buffer_and_is_released_by_reading(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    with handle.open_channel({"count": 20}, timeout=WAIT) as channel:
        buffer = channel_actors.Streamer.channel_buffer
        # Nothing read yet: the producer fills the buffer and blocks on the next send.
        wait_for(lambda: ("sending", channel.id, buffer) in channel_actors.LOG)
        assert len(notes("sent")) == buffer
        received = list(channel)
    assert received == [{"i": i} for i in range(20)]
    assert len(notes("sent")) == 20


def test_a_send_into_a_buffer_nobody_reads_times_out(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    script = {"count": 10, "send_timeout": 0.1}
    with handle.open_channel(script, timeout=WAIT) as channel:
        wait_for(lambda: notes("producer failed"))
        buffer = channel_actors.Streamer.channel_buffer
        assert notes("producer failed") == [("producer failed", channel.id, "RequestTimeout")]
        messages = iter(channel)
        assert [next(messages) for _ in range(buffer)] == [{"i": i} for i in range(buffer)]


def test_waiting_past_the_timeout_for_a_message_raises_and_closes(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    channel = handle.open_channel({"count": 0, "keep_open": True}, timeout=0.2)
    with pytest.raises(RequestTimeout, match="sent nothing"):
        list(channel)
    assert channel.closed
    wait_for(lambda: notes("closed by caller"))


def test_an_open_the_actor_does_not_reach_in_time_times_out(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    release = gate("busy")
    handle.send({"wait": "busy"})
    with pytest.raises(RequestTimeout, match="did not answer"):
        handle.open_channel({"count": 1}, timeout=0.2)
    release.set()
    assert handle.request("ping", timeout=WAIT) == "ok"
    assert notes("open") == []  # the abandoned open never ran


# -- refusal ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"refuse": True}, "refused"),
        ({"raise": "no such model"}, "no such model"),
        ({"defer": "refuse"}, "handle_channel_open returned str, not True or False"),
    ],
)
def test_a_refusal_raises_channel_refused_with_the_reason(
    start: Callable[..., ActorHandle], message: dict[str, Any], reason: str
) -> None:
    handle = start()
    with pytest.raises(ChannelRefused) as refused:
        handle.open_channel(message, timeout=WAIT)
    assert (refused.value.actor, refused.value.reason) == ("streamer", reason)
    assert [event["reason"] for event in channel_events(handle, "channel-refused")] == [reason]
    assert handle.request("ping", timeout=WAIT) == "ok"  # a refusal is not a crash


def test_a_deferred_accept_opens_and_an_actor_without_channels_refuses(
    start: Callable[..., ActorHandle],
) -> None:
    with start().open_channel({"defer": True}, timeout=WAIT) as channel:
        assert not channel.closed
    echo = start("tests.sample_actors:Echo")
    with pytest.raises(ChannelRefused, match="Echo does not accept channels"):
        echo.open_channel("hi", timeout=WAIT)


# -- closing ---------------------------------------------------------------------------------


def test_leaving_the_with_block_closes_and_the_producer_sees_it(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    with handle.open_channel({"watch": True}, timeout=WAIT) as channel:
        assert next(iter(channel)) == {"watching": True}
    assert channel.closed
    wait_for(lambda: notes("producer saw closed"))
    wait_for(lambda: notes("closed by caller"))
    assert notes("closed by caller") == [("closed by caller", channel.id)]


def test_breaking_out_of_the_loop_closes_and_releases_a_blocked_producer(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    channel = handle.open_channel({"count": 1000}, timeout=WAIT)
    for message in channel:
        if message == {"i": 2}:
            break
    assert channel.closed
    # The producer was blocked on the full buffer or is between sends: either way it stops.
    wait_for(lambda: notes("producer failed") or notes("producer saw closed"))
    wait_for(lambda: notes("closed by caller"))
    assert len(notes("sent")) < 1000
    channel.close()  # again: harmless


# -- the actor's end -------------------------------------------------------------------------


def test_a_crash_mid_stream_raises_actor_failed_and_the_restart_replays_nothing(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    channel = handle.open_channel_json({"watch": True}, timeout=WAIT)
    messages = iter(channel)
    assert next(messages) == {"watching": True}
    release = gate("busy")
    handle.send({"wait": "busy"})
    handle.send("crash")
    channel.send("queued behind the crash")
    release.set()
    with pytest.raises(ActorFailed, match="asked to crash"):
        next(messages)
    with pytest.raises(ActorFailed):
        channel.send("after the crash")
    wait_for(lambda: notes("producer saw closed"))
    # The next incarnation answers, and never saw the channel nor its queued message.
    assert handle.request("ping", timeout=WAIT) == "ok"
    assert len(notes("init")) == 2
    assert notes("message") == []
    assert len(notes("open")) == 1
    [close] = channel_events(handle, "channel-close")
    assert (close["closed_by"], close["error"]) == (
        "crash",
        "actor 'streamer' failed: RuntimeError: asked to crash",
    )


def test_a_stop_mid_stream_raises_actor_stopped_in_a_waiting_caller(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    channel = handle.open_channel({"count": 2, "keep_open": True}, timeout=WAIT)
    outcome: list[Any] = []

    def consume() -> None:
        try:
            outcome.extend(channel)
        except ActorStopped as exc:
            outcome.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    wait_for(lambda: len(outcome) == 2)  # it now waits for a third message
    handle.stop(timeout=WAIT)
    consumer.join(WAIT)
    assert not consumer.is_alive()
    assert outcome[:2] == [{"i": 0}, {"i": 1}]
    assert isinstance(outcome[2], ActorStopped)
    with pytest.raises(ActorStopped):
        handle.open_channel({"count": 1}, timeout=WAIT)


def test_messages_sent_before_a_crash_are_read_before_the_failure(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    channel = handle.open_channel({"count": 3, "keep_open": True}, timeout=WAIT)
    wait_for(lambda: len(notes("sent")) == 3)
    handle.crash("killed")
    received: list[Any] = []
    with pytest.raises(ActorFailed, match="killed"):
        received.extend(channel)
    assert received == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_an_open_queued_behind_a_crash_goes_to_the_next_incarnation(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    release = gate("busy")
    handle.send({"wait": "busy"})
    handle.send("crash")
    opened: list[Any] = []
    opener = threading.Thread(
        target=lambda: opened.append(handle.open_channel({"count": 2}, timeout=WAIT))
    )
    opener.start()
    wait_for(lambda: handle._current().queued() >= 2)
    release.set()
    opener.join(WAIT)
    [channel] = opened
    assert list(channel) == [{"i": 0}, {"i": 1}]
    assert len(notes("init")) == 2


def test_a_crash_before_a_deferred_accept_fails_the_open(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    accept = gate("accept")
    opened: list[Any] = []

    def open_it() -> None:
        try:
            opened.append(handle.open_channel({"defer": True, "gate": "accept"}, timeout=WAIT))
        except ActorFailed as exc:
            opened.append(exc)

    opener = threading.Thread(target=open_it)
    opener.start()
    wait_for(lambda: notes("open"))
    handle.crash("before the accept")
    opener.join(WAIT)
    accept.set()
    [outcome] = opened
    assert isinstance(outcome, ActorFailed)
    assert "before the accept" in outcome.reason


# -- many at once, the chain, threads --------------------------------------------------------


def test_many_concurrent_channels_each_get_their_own_stream(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    results: dict[int, list[Any]] = {}

    def consume(n: int) -> None:
        with handle.open_channel({"count": 30 + n}, timeout=WAIT) as channel:
            results[n] = list(channel)

    threads = [threading.Thread(target=consume, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert results == {n: [{"i": i} for i in range(30 + n)] for n in range(16)}
    assert len(channel_events(handle, "channel-close")) == 16


def test_the_chain_records_the_open_the_close_and_a_digest_not_each_message(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    with handle.open_channel_json({"watch": True}, timeout=WAIT) as channel:
        messages = iter(channel)
        received = [next(messages)]
        for word in ("one", "two"):
            channel.send(word)
            received.append(next(messages))
    wait_for(lambda: channel_events(handle, "channel-close"))
    [opened] = channel_events(handle, "channel-open")
    assert opened == {"channel": channel.id, "message": {"watch": True}}
    [closed] = channel_events(handle, "channel-close")
    lines = b"".join(
        json.dumps(m, sort_keys=True, separators=(",", ":")).encode() + b"\n" for m in received
    )
    assert closed["to_caller"] == {
        "count": 3,
        "bytes": len(lines),
        "sha256": hashlib.sha256(lines).hexdigest(),
    }
    sent = b'"one"\n"two"\n'
    assert closed["to_actor"] == {
        "count": 2,
        "bytes": len(sent),
        "sha256": hashlib.sha256(sent).hexdigest(),
    }
    assert (closed["closed_by"], closed["error"]) == ("caller", None)
    kinds = [event.event_type for event in handle.events()]
    assert not any("message" in kind for kind in kinds)  # no event per message
    assert handle.verify().ok


def test_channels_leave_no_thread_behind(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    path = tmp_path / "streamer.toml"
    path.write_text(
        'name = "streamer"\nversion = "0.1.0"\ncomponent = "tests.channel_actors:Streamer"\n'
    )
    with Runtime(in_memory=True) as runtime:
        handle = runtime.start_actor(path)
        with handle.open_channel({"count": 10}, timeout=WAIT) as channel:
            assert len(list(channel)) == 10
        channel = handle.open_channel({"count": 100}, timeout=WAIT)
        messages = iter(channel)
        next(messages)
        handle.crash("mid-stream")
        with pytest.raises(ActorFailed):
            list(messages)
        with handle.open_channel({"watch": True}, timeout=WAIT) as channel:
            next(iter(channel))
        handle.stop(timeout=WAIT)
    for thread in set(threading.enumerate()) - before:
        thread.join(WAIT)
    assert set(threading.enumerate()) - before == set()


# -- the control socket and the CLI ----------------------------------------------------------


@pytest.fixture
def server(runtime: Runtime, tmp_path: Path) -> Iterator[ControlServer]:
    srv = ControlServer(runtime, tmp_path / "h")
    srv.start()
    yield srv
    srv.close()


def test_a_client_streams_a_channel_through_the_control_socket(
    start: Callable[..., ActorHandle], server: ControlServer
) -> None:
    handle = start()
    client = ControlClient(server.home, timeout=WAIT)
    with client.stream("streamer", {"count": 5}, timeout=WAIT) as stream:
        assert list(stream) == [{"i": i} for i in range(5)]
    assert stream.summary == {"count": 5, "ended": "closed"}
    with pytest.raises(RemoteError) as refused:
        list(client.stream("streamer", {"raise": "not today"}, timeout=WAIT))
    assert (refused.value.type, refused.value.message) == (
        "ChannelRefused",
        "actor 'streamer' refused the channel: not today",
    )
    # A crash mid-stream: the messages sent before it, then the failure.
    received: list[Any] = []
    with client.stream("streamer", {"count": 2, "keep_open": True}, timeout=WAIT) as stream:
        messages = iter(stream)
        received.extend(next(messages) for _ in range(2))
        handle.crash("mid-stream")
        with pytest.raises(RemoteError) as failed:
            next(messages)
    assert received == [{"i": 0}, {"i": 1}]
    assert failed.value.type == "ActorFailed"


def test_a_client_hanging_up_closes_the_channel(
    start: Callable[..., ActorHandle], server: ControlServer
) -> None:
    handle = start()
    client = ControlClient(server.home, timeout=WAIT)
    with client.stream("streamer", {"watch": True}, timeout=WAIT) as stream:
        assert next(iter(stream)) == {"watching": True}
    wait_for(lambda: notes("closed by caller"))
    wait_for(lambda: notes("producer saw closed"))
    [closed] = channel_events(handle, "channel-close")
    assert closed["closed_by"] == "caller"


def test_a_stream_ends_when_the_server_stops_and_the_channel_closes(
    start: Callable[..., ActorHandle], server: ControlServer
) -> None:
    handle = start()
    client = ControlClient(server.home, timeout=WAIT)
    with client.stream("streamer", {"watch": True}, timeout=WAIT) as stream:
        messages = iter(stream)
        assert next(messages) == {"watching": True}
        server.stop()
        assert list(messages) == []
    assert stream.summary == {"count": 1, "ended": "server stopping"}
    wait_for(lambda: notes("closed by caller"))
    assert handle.request("ping", timeout=WAIT) == "ok"


def test_a_bad_stream_flag_is_a_bad_request(server: ControlServer) -> None:
    client = ControlClient(server.home, timeout=WAIT)
    with pytest.raises(RemoteError, match="field 'stream': expected true or false"):
        client.call("request", actor="streamer", message=1, stream="yes")


def test_cli_request_stream_prints_json_lines_whose_digest_the_chain_holds(
    start: Callable[..., ActorHandle],
    server: ControlServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handle = start()
    home = str(server.home)
    status = main(["--home", home, "request", "--stream", "streamer", '{"count": 3}'])
    out, _ = capsys.readouterr()
    assert status == 0
    assert out.splitlines() == ['{"i":0}', '{"i":1}', '{"i":2}']
    wait_for(lambda: channel_events(handle, "channel-close"))
    [closed] = channel_events(handle, "channel-close")
    assert closed["to_caller"]["sha256"] == hashlib.sha256(out.encode()).hexdigest()
    status = main(["--home", home, "request", "--stream", "streamer", '{"refuse": true}'])
    _, err = capsys.readouterr()
    assert status == 1
    assert "refused the channel: refused" in err


def test_cli_request_stream_runs_an_actor_in_process_and_checks_its_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "streamer.toml"
    path.write_text(
        'name = "streamer"\nversion = "0.1.0"\ncomponent = "tests.channel_actors:Streamer"\n'
    )
    home = str(tmp_path / "h")
    args = ["--home", home, "request", "--stream", "--manifest", str(path), '{"count": 2}']
    assert main(args) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == ['{"i":0}', '{"i":1}']
    assert main(["--home", home, "request", "--stream", '{"count": 2}']) == 2
    _, err = capsys.readouterr()
    assert "give the actor's NAME and the MESSAGE" in err


def test_json_that_does_not_decode_names_the_field_and_the_actor_runs_on(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start("Strict")
    with pytest.raises(MessageDecodeError) as bad:
        handle.open_channel_json({"n": "one"}, timeout=WAIT)
    assert bad.value.path == "n"
    with handle.open_channel_json({"n": 1}, timeout=WAIT) as channel:
        messages = iter(channel)
        channel.send({"n": "two"})  # dropped, and recorded
        channel.send({"n": 2})
        assert next(messages) == {"n": 3}
    [rejected] = channel_events(handle, "channel-message-rejected")
    assert rejected["channel"] == channel.id
    assert "n" in rejected["error"]
    [refused] = channel_events(handle, "channel-refused")
    assert refused["reason"].startswith("n: ")


def test_a_stop_that_times_out_still_ends_the_channels_at_once(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start()
    channel = handle.open_channel({"watch": True}, timeout=WAIT)
    messages = iter(channel)
    next(messages)
    stuck = gate("stuck")
    handle.send({"wait": "stuck"})
    with pytest.raises(RequestTimeout):
        handle.stop(timeout=0.1)  # its handler still runs, flagged
    with pytest.raises(ActorStopped):
        next(messages)
    wait_for(lambda: notes("producer saw closed"))
    stuck.set()
