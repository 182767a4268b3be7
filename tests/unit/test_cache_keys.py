"""Valkey keys: every key of one user is in the user's hash slot and names that user and no other."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from reverie.cache import keys
from reverie.cache.working_memory import parse_turns
from reverie.domain.fields import SAFE_ID_PATTERN
from reverie.domain.memory import Turn

safe_ids = st.from_regex(SAFE_ID_PATTERN, fullmatch=True)


def user_keys(project: str, user: str, session: str) -> list[str]:
    return [keys.session(project, user, session), keys.idempotency_prefix(project, user) + "#abc",
            *keys.fixed_user_keys(project, user)]


def test_a_session_key_names_project_user_and_session():
    assert keys.session("p1", "ana", "s1") == "wm:{p1:ana}:s1"


@given(safe_ids, safe_ids)
def test_escaping_keeps_different_ids_apart(a, b):
    if a != b:
        assert keys.escape(a) != keys.escape(b)
    assert ":" not in keys.escape(a)


@given(safe_ids, safe_ids, safe_ids)
def test_every_key_of_a_user_is_in_the_users_hash_slot(project, user, session):
    slots = {key_slot(k.encode()) for k in user_keys(project, user, session)}
    assert slots == {key_slot(keys.user_tag(project, user).encode())}


@given(safe_ids, safe_ids, safe_ids, safe_ids)
def test_a_users_keys_name_that_user_and_no_other(project, user, other_user, session):
    for key in user_keys(project, user, session):
        assert keys.owner_of(key) == (project, user)
    if other_user != user:
        assert keys.user_tag(project, user) != keys.user_tag(project, other_user)


def test_a_user_id_that_extends_another_is_another_user():
    assert keys.owner_of(keys.outbox("p1", "ana:bob")) == ("p1", "ana:bob")
    assert keys.owner_of(keys.outbox("p1:x", "ana")) == ("p1:x", "ana")


@given(safe_ids, safe_ids)
def test_a_users_outbox_is_listed_in_one_shard_of_the_index(project, user):
    shard = keys.outbox_index_of(project, user)
    assert shard in {keys.outbox_index(n) for n in range(keys.OUTBOX_INDEX_SHARDS)}
    assert shard == keys.outbox_index_of(project, user)


def test_an_unreadable_entry_is_skipped_and_the_rest_kept():
    good = Turn(role="user", content="hello")
    turns = parse_turns([b"not json", good.model_dump_json().encode(), b'{"role": "robot"}'])
    assert turns == [good]
