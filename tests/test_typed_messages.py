"""Typed requests and replies through the runtime, in serde's JSON shapes."""

from __future__ import annotations

import pytest

from tests.conftest import ManifestFactory
from tests.sample_actors import Add, Count, Item, Total
from theater_py import MessageDecodeError, Runtime


def test_typed_requests_get_typed_replies(runtime: Runtime, make_manifest: ManifestFactory):
    shop = runtime.start_actor(make_manifest("Shop"))
    assert shop.request(Add([Item("pear", 2), Item("fig")])) == Total(3)
    assert shop.request(Count()) == Total(3)


def test_json_requests_are_decoded_and_replies_encoded(
    runtime: Runtime, make_manifest: ManifestFactory
):
    shop = runtime.start_actor(make_manifest("Shop"))
    reply = shop.request_json({"Add": {"items": [{"name": "pear", "quantity": 4}]}})
    assert reply == {"Total": {"count": 4}}
    assert shop.request_json("Count") == {"Total": {"count": 4}}


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"Add": {"items": [{"name": "pear", "quantity": "many"}]}}, "Add.items[0].quantity"),
        ({"Add": {"items": [{"quantity": 1}]}}, "Add.items[0].name"),
        ({"Remove": {}}, ""),
    ],
)
def test_a_malformed_message_names_its_path_and_the_actor_keeps_running(
    runtime: Runtime, make_manifest: ManifestFactory, value: object, path: str
):
    shop = runtime.start_actor(make_manifest("Shop"))
    with pytest.raises(MessageDecodeError) as caught:
        shop.request_json(value)
    assert caught.value.path == path
    assert shop.request_json("Count") == {"Total": {"count": 0}}
    assert any(e.event_type == "request-rejected" for e in shop.events())


def test_an_actor_may_answer_a_malformed_message_itself(
    runtime: Runtime, make_manifest: ManifestFactory
):
    shop = runtime.start_actor(make_manifest("Shop"), {"answer_bad_json": True})
    reply = shop.request_json({"Add": {"items": "none"}})
    assert list(reply) == ["Rejected"]
    assert "Add.items" in reply["Rejected"]["error"]


def test_a_send_that_does_not_decode_is_dropped_and_recorded(
    runtime: Runtime, make_manifest: ManifestFactory
):
    shop = runtime.start_actor(make_manifest("Shop"))
    shop.send_json({"Add": {"items": 3}})
    assert shop.request_json("Count") == {"Total": {"count": 0}}
    assert any(e.event_type == "send-rejected" for e in shop.events())
