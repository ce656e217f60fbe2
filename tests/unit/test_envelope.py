"""Envelope: pack/repack, info, the tuple form, and what a sent (moved) envelope does."""

from __future__ import annotations

import pickle

import pytest

from megflow_mp.envelope import Envelope, MovedEnvelope, mark_moved
from megflow_mp.errors import EnvelopeMoved

INFO = {"partial_id": 3, "from_addr": 1, "to_addr": 2, "tag": "A", "extra_data": "x", "transfer_addr": 9,
        "origin": (0, 1)}


def test_pack_without_info_has_empty_routing():
    env = Envelope.pack({"k": 1})
    assert env.msg == {"k": 1}
    assert env.info() == dict.fromkeys(INFO)


def test_pack_with_info_sets_every_field():
    env = Envelope.pack("m", INFO)
    assert env.info() == INFO
    assert env.msg == "m"


def test_pack_rejects_unknown_info_key():
    with pytest.raises(KeyError, match="unknown envelope info 'addr'.*partial_id"):
        Envelope.pack(1, {"addr": 3})


def test_pack_rejects_msg_in_info():
    with pytest.raises(KeyError, match="'msg'"):
        Envelope.pack(1, {"msg": 2})


def test_repack_is_a_new_envelope_with_same_info():
    env = Envelope.pack("old", INFO)
    new = env.repack("new")
    assert new is not env
    assert (new.msg, new.info()) == ("new", INFO)
    assert env.msg == "old"
    new.to_addr = 7
    assert env.to_addr == 2  # info is copied, not shared


def test_is_empty():
    assert Envelope.pack(None).is_empty()
    assert not Envelope.pack(0).is_empty()


def test_tuple_round_trip_and_pickle():
    env = Envelope.pack([1, 2], INFO)
    back = Envelope.from_tuple(pickle.loads(pickle.dumps(env.to_tuple())))
    assert (back.msg, back.info()) == ([1, 2], INFO)


def test_fields_are_assignable():
    env = Envelope.pack(1)
    env.partial_id, env.msg = 5, "two"
    assert (env.partial_id, env.msg) == (5, "two")


def test_slots_deny_unknown_attributes():
    with pytest.raises(AttributeError):
        Envelope.pack(1).color = "red"


def test_repr_names_msg_and_routing():
    assert repr(Envelope.pack("m", {"partial_id": 1, "to_addr": 4})) == "Envelope(msg='m', partial_id=1, to_addr=4)"


@pytest.mark.parametrize("use", [
    lambda e: e.msg,
    lambda e: e.partial_id,
    lambda e: e.transfer_addr,
    lambda e: setattr(e, "msg", 1),
    lambda e: e.repack(2),
    lambda e: e.info(),
    lambda e: e.is_empty(),
    lambda e: e.to_tuple(),
], ids=["msg", "partial_id", "transfer_addr", "set msg", "repack", "info", "is_empty", "to_tuple"])
def test_moved_envelope_refuses_every_use(use):
    env = Envelope.pack(1, INFO)
    mark_moved(env)
    with pytest.raises(EnvelopeMoved, match="used after send"):
        use(env)


def test_moved_envelope_is_still_an_envelope_and_others_are_untouched():
    a, b = Envelope.pack(1), Envelope.pack(2)
    mark_moved(a)
    assert isinstance(a, Envelope) and type(a) is MovedEnvelope
    assert b.msg == 2 and type(b) is Envelope


def test_envelope_moved_is_a_runtime_error():
    assert issubclass(EnvelopeMoved, RuntimeError)
