"""Tier-1 keys: one per session, and a user's pattern never reaches another user's keys."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from reverie.cache import keys
from reverie.cache.working_memory import parse_turns
from reverie.domain.fields import SAFE_ID_PATTERN
from reverie.domain.memory import Turn

safe_ids = st.from_regex(SAFE_ID_PATTERN, fullmatch=True)


def glob_matches(pattern: str, key: str) -> bool:
    """Valkey's MATCH for the patterns we make: '*' is a wildcard, a backslash escapes the next character."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern[i] == "\\":
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += ".*" if pattern[i] == "*" else re.escape(pattern[i])
        i += 1
    return re.fullmatch(regex, key, re.DOTALL) is not None


def test_a_session_key_names_project_user_and_session():
    assert keys.session("p1", "ana", "s1") == "wm:p1:ana:s1"


@given(safe_ids, safe_ids)
def test_escaping_keeps_different_ids_apart(a, b):
    if a != b:
        assert keys.escape(a) != keys.escape(b)
    assert ":" not in keys.escape(a)


@given(safe_ids, safe_ids, safe_ids, safe_ids)
def test_a_users_pattern_matches_exactly_that_users_sessions(project, user, other_user, session):
    assert glob_matches(keys.sessions_pattern(project, user), keys.session(project, user, session))
    if other_user != user:
        assert not glob_matches(keys.sessions_pattern(project, user), keys.session(project, other_user, session))


def test_a_user_id_that_extends_another_is_not_matched_by_it():
    assert not glob_matches(keys.sessions_pattern("p1", "ana"), keys.session("p1", "ana:bob", "s1"))
    assert not glob_matches(keys.sessions_pattern("p1", "ana"), keys.session("p1:x", "ana", "s1"))


def test_an_unreadable_entry_is_skipped_and_the_rest_kept():
    good = Turn(role="user", content="hello")
    turns = parse_turns([b"not json", good.model_dump_json().encode(), b'{"role": "robot"}'])
    assert turns == [good]
