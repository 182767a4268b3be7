"""What the functions call in AWS on the local stack is what their roles allow (checked after every e2e test,
see conftest.py); this shows the check sees the calls and would fail on one the table does not hold."""

from __future__ import annotations

from reverie.platform.permissions import CALLS


def test_the_calls_a_function_makes_are_seen_and_held_against_its_role(stack):
    assert "queues" in stack.invoke("AdminFunction", {"action": "ops.status"})
    assert ("AdminFunction", "sqs:GetQueueAttributes") in stack.aws_calls.seen
    assert stack.aws_calls.not_allowed() == []
    stack.aws_calls.seen.add(("ChatFunction", "sqs:PurgeQueue"))
    try:
        assert stack.aws_calls.not_allowed() == [("ChatFunction", "sqs:PurgeQueue")]
        assert "sqs:PurgeQueue" not in CALLS["ChatFunction"]
    finally:
        stack.aws_calls.seen.discard(("ChatFunction", "sqs:PurgeQueue"))
