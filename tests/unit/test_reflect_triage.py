"""The cheap check before a reflection call: what it lets through (anything that might be a fact, a rule or more
than small talk) and what it stops (questions about the world, requests, thanks)."""

from __future__ import annotations

import pytest

from reverie.domain.tiers import Tier
from reverie.reflect import triage
from tests.support.reflect import job

FACTS = [
    "I live in Porto.", "I moved to Berlin last month.", "My sister is Ana.", "We got a puppy yesterday!",
    "I'm a nurse.", "I've been learning the cello for a year.", "Since I moved to Berlin, where should I eat?",
    "Can you help me plan my sister's wedding?", "Our flat has two bedrooms.", "I don't eat meat.",
    "Call me Bea.", "i work at acme",
]
NO_FACTS = [
    "What's the weather like today?", "How do I cook rice?", "Tell me a joke.", "Thanks!", "ok",
    "Explain compound interest.", "Can you recommend a good book?", "What time is it in Tokyo?",
    "Thank you so much!", "I see.", "Yes, I agree.", "Can you give me three examples?",
]
RULES = [
    "Please always answer in Portuguese.", "I prefer short answers.", "I always take the train to work.",
    "Never suggest flights before 9am.", "From now on, use bullet points.", "Keep it brief.",
    "Every Sunday I go running.", "I'm a big fan of jazz.", "I love pottery.", "Don't use emojis.",
    "My favourite colour is green.", "Reply in German please.",
]
NO_RULES = [
    "I live in Porto.", "How do I cook rice?", "What's the weather like today?", "Tell me a joke.",
    "My sister is Ana.", "Thanks!", "Can you recommend a good book?", "I moved to Berlin last month.",
]


@pytest.mark.parametrize("text", FACTS)
def test_what_might_state_a_fact_gets_the_semantic_call(text):
    assert triage.might_state_a_fact(text)


@pytest.mark.parametrize("text", NO_FACTS)
def test_questions_about_the_world_requests_and_thanks_state_no_fact(text):
    assert not triage.might_state_a_fact(text)


@pytest.mark.parametrize("text", RULES)
def test_what_might_state_a_preference_habit_or_instruction_gets_the_procedural_call(text):
    assert triage.might_state_a_rule(text)


@pytest.mark.parametrize("text", NO_RULES)
def test_facts_questions_and_thanks_state_no_rule(text):
    assert not triage.might_state_a_rule(text)


@pytest.mark.parametrize(("text", "small"), [("Hi!", True), ("Great, thanks a lot!", True), ("Thank you!", True),
                                             ("ok", True), ("", True), ("Good morning", True),
                                             ("How do I cook rice?", False), ("Hi, I live in Porto", False)])
def test_small_talk_is_greetings_thanks_and_acknowledgements_only(text, small):
    assert triage.is_small_talk(text) is small


def test_a_window_is_checked_as_a_whole_on_the_users_words_only():
    quiet = [job("p", "ana", "What's the weather like today?"), job("p", "ana", "Thanks!")]
    assert not triage.worth_a_call(Tier.SEMANTIC, quiet)
    assert not triage.worth_a_call(Tier.PROCEDURAL, quiet)
    assert triage.worth_a_call(Tier.EPISODIC, quiet)
    assert triage.worth_a_call(Tier.SEMANTIC, [*quiet, job("p", "ana", "I live in Porto.")])
    assert not triage.worth_a_call(Tier.EPISODIC, [job("p", "ana", "Hi!"), job("p", "ana", "ok")])
    # the assistant's words ("Noted." in these jobs, and here a first-person reply) are not the user's
    replied = job("p", "ana", "Tell me a joke.")
    replied.turns[1].content = "I love jokes! My favourite is about a cat."
    assert not triage.worth_a_call(Tier.SEMANTIC, [replied]) and not triage.worth_a_call(Tier.PROCEDURAL, [replied])


@pytest.mark.parametrize("text", ["Eu moro em Lisboa com a minha irmã.", "Ich wohne in Berlin.", "我住在北京",
                                  "Moro em Lisboa."])
def test_words_the_check_cannot_read_always_get_the_call(text):
    assert not triage.readable(text)
    assert all(triage.worth_a_call(tier, [job("p", "ana", text)]) for tier in Tier)
    assert triage.readable("Tell me a joke.") and triage.readable("I went to Paris, la ville lumière")
