"""The offline model: deterministic, lexically meaningful embeddings, skill dispatch and failure injection."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest
from pydantic import BaseModel, Field

from reverie.llm import (
    LLM,
    LLMInvalidOutput,
    LLMRateLimited,
    OfflineLLM,
    OpenAICompatibleLLM,
    make_llm,
    register_skill,
)
from reverie.llm.offline import registered_skills, unregister_skill


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


class Fact(BaseModel):
    subject: str
    confidence: float = Field(ge=0, le=1)


class OptionalFacts(BaseModel):
    facts: list[str] = []


@pytest.fixture
def skill():
    """Register skills for one test only, so the global registry is left as it was found."""
    added: list[str] = []

    def add(purpose: str):
        added.append(purpose)
        return register_skill(purpose)

    yield add
    for purpose in added:
        unregister_skill(purpose)


def test_offline_model_satisfies_the_llm_protocol():
    assert isinstance(OfflineLLM(), LLM)
    llm = OfflineLLM()
    assert (llm.chat_model, llm.embedding_model, llm.dimensions) == (
        "offline-chat",
        "offline-hash-embed-v1",
        384,
    )


def test_embeddings_are_identical_across_instances():
    texts = ["I live in Porto", "Ich wohne in Köln", ""]
    assert OfflineLLM(dimensions=64).embed(texts).vectors == OfflineLLM(dimensions=64).embed(texts).vectors


def test_embeddings_are_identical_across_processes():
    # Python's hash() is salted per process; a fresh interpreter proves the hash used is not.
    code = (
        "from reverie.llm import OfflineLLM;"
        "print(repr(OfflineLLM(dimensions=16).embed(['the user lives in Porto']).vectors[0]))"
    )
    env_path = ":".join(p for p in sys.path if p)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": env_path, "PYTHONHASHSEED": "12345"},
    ).stdout
    assert out.strip() == repr(OfflineLLM(dimensions=16).embed(["the user lives in Porto"]).vectors[0])


@pytest.mark.parametrize("dimensions", [8, 384, 1536])
@pytest.mark.parametrize("text", ["I live in Porto", "", "the of and", "日本語のテキスト", "x"])
def test_embedding_has_requested_length_and_unit_norm(dimensions, text):
    (vector,) = OfflineLLM(dimensions=dimensions).embed([text]).vectors
    assert len(vector) == dimensions
    assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-9)


def test_empty_text_gives_a_fixed_unit_vector():
    llm = OfflineLLM(dimensions=32)
    assert (
        llm.embed([""]).vectors[0]
        == llm.embed([""]).vectors[0]
        == OfflineLLM(dimensions=32).embed([""]).vectors[0]
    )


def test_shared_words_score_higher_than_unrelated_text():
    fact, question, unrelated = (
        OfflineLLM()
        .embed(["I live in Porto", "where does the user live? Porto", "my favourite food is sushi"])
        .vectors
    )
    related = cosine(fact, question)
    assert related > 0.5
    assert related > cosine(fact, unrelated) + 0.4
    assert related > cosine(question, unrelated) + 0.4


def test_light_stemming_matches_word_forms():
    llm = OfflineLLM()
    a, b, c = llm.embed(
        ["she lives near the harbour", "living near harbours", "bought a red bicycle"]
    ).vectors
    assert cosine(a, b) > 0.6
    assert cosine(a, b) > cosine(a, c) + 0.5


def test_word_forms_of_one_stem_embed_identically():
    vectors = OfflineLLM().embed(["live", "lives", "lived", "living", "Live"]).vectors
    assert all(v == vectors[0] for v in vectors)


def test_word_order_matters_through_bigrams():
    a, b = OfflineLLM().embed(["dog bites man", "man bites dog"]).vectors
    assert 0.5 < cosine(a, b) < 0.95


def test_batch_embed_returns_vectors_in_input_order():
    llm = OfflineLLM(dimensions=64)
    texts = ["alpha beta", "gamma delta", "epsilon", "I live in Porto"]
    batch = llm.embed(texts).vectors
    assert batch == [llm.embed([t]).vectors[0] for t in texts]
    assert llm.embed(list(reversed(texts))).vectors == list(reversed(batch))


def test_embed_usage_counts_one_call_with_tokens():
    usage = OfflineLLM().embed(["hello world", "another text here"]).usage
    assert usage.calls == 1
    assert usage.model == "offline-hash-embed-v1"
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_is_deterministic_short_and_mentions_remembered_lines():
    messages = [
        {
            "role": "system",
            "content": "You are helpful.\nWhat you remember:\n- The user has a cat\n- The user is vegetarian"
            "\n- The user lives in Porto",
        },
        {"role": "user", "content": "Where do I live again?"},
    ]
    first = OfflineLLM().chat(messages)
    second = OfflineLLM().chat(messages)
    assert first == second
    assert len(first.text) <= 300
    assert "I remember that" in first.text
    # The line sharing words with the question is mentioned first, though it came last in the prompt.
    assert first.text.startswith("I remember that The user lives in Porto")
    assert "Where do I live again?" in first.text  # the acknowledgement echoes the user
    assert first.text.count("The user") <= 2  # at most two remembered lines
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert first.usage.model == "offline-chat"


def test_chat_without_memories_still_acknowledges_and_stays_short():
    reply = OfflineLLM().chat([{"role": "user", "content": "word " * 500}])
    assert "I remember" not in reply.text
    assert reply.text.startswith("Noted.")
    assert len(reply.text) <= 300
    assert reply.usage.completion_tokens > 0


def test_chat_respects_max_tokens():
    messages = [{"role": "user", "content": "tell me a long story about the sea and the harbour"}]
    assert len(OfflineLLM().chat(messages, max_tokens=5).text) <= 20


def test_structured_dispatches_to_the_registered_skill(skill):
    seen = []

    @skill("test_extract")
    def extract(messages, schema):
        seen.append((messages, schema))
        return {"subject": messages[-1]["content"].upper(), "confidence": 0.5}

    messages = [{"role": "user", "content": "porto"}]
    result = OfflineLLM().structured(messages, Fact, purpose="test_extract")
    assert result.value == Fact(subject="PORTO", confidence=0.5)
    assert seen == [(messages, Fact)]
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert "test_extract" in registered_skills()


def test_structured_accepts_a_model_from_a_skill_and_revalidates_it(skill):
    @skill("test_model")
    def returns_model(messages, schema):
        return Fact.model_construct(subject="x", confidence=7.0)  # bypasses validation on purpose

    with pytest.raises(LLMInvalidOutput):
        OfflineLLM().structured([{"role": "user", "content": "hi"}], Fact, purpose="test_model")


def test_structured_rejects_skill_output_that_does_not_fit_the_schema(skill):
    @skill("test_bad")
    def bad(messages, schema):
        return {"subject": "x"}  # confidence missing

    with pytest.raises(LLMInvalidOutput) as info:
        OfflineLLM().structured([{"role": "user", "content": "hi"}], Fact, purpose="test_bad")
    assert info.value.retryable


def test_unknown_purpose_gives_an_empty_instance_when_the_schema_allows_it():
    result = OfflineLLM().structured(
        [{"role": "user", "content": "hi"}], OptionalFacts, purpose="no_such_skill"
    )
    assert result.value == OptionalFacts()


def test_unknown_purpose_raises_when_the_schema_needs_fields():
    with pytest.raises(LLMInvalidOutput, match="no skill for 'no_such_skill'"):
        OfflineLLM().structured([{"role": "user", "content": "hi"}], Fact, purpose="no_such_skill")


def test_fail_when_is_asked_before_every_call_and_its_exception_raised():
    calls: list[tuple[str, list[dict]]] = []

    def fail_when(operation: str, messages: list[dict]):
        calls.append((operation, messages))
        return LLMRateLimited("injected", status=429) if operation != "chat" else None

    llm = OfflineLLM(fail_when=fail_when)
    assert llm.chat([{"role": "user", "content": "hi"}]).text
    with pytest.raises(LLMRateLimited, match="injected"):
        llm.embed(["a", "b"])
    with pytest.raises(LLMRateLimited):
        llm.structured([{"role": "user", "content": "x"}], OptionalFacts, purpose="extract_semantic")
    assert [op for op, _ in calls] == ["chat", "embed", "structured:extract_semantic"]
    assert calls[1][1] == [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]


def test_delays_sleep_once_per_call():
    llm = OfflineLLM(reply_delay_s=0.05, embed_delay_s=0.05, structured_delay_s=0.05)
    start = time.perf_counter()
    llm.embed(["t"] * 50)  # once per call, not once per text
    llm.chat([{"role": "user", "content": "hi"}])
    llm.structured([{"role": "user", "content": "hi"}], OptionalFacts, purpose="nothing")
    elapsed = time.perf_counter() - start
    assert 0.15 <= elapsed < 1.0


def test_make_llm_picks_offline_without_base_url_and_real_client_with_one():
    offline = make_llm(
        base_url=None,
        api_key=None,
        chat_model="m",
        embedding_model="e",
        dimensions=16,
        timeout_s=1,
        max_retries=0,
        offline_embed_delay_s=0.01,
    )
    assert isinstance(offline, OfflineLLM) and offline.dimensions == 16 and offline.embed_delay_s == 0.01
    assert isinstance(
        make_llm(
            base_url="",
            api_key="k",
            chat_model="m",
            embedding_model="e",
            dimensions=8,
            timeout_s=1,
            max_retries=0,
        ),
        OfflineLLM,
    )
    real = make_llm(
        base_url="http://127.0.0.1:9/v1",
        api_key="k",
        chat_model="m",
        embedding_model="e",
        dimensions=8,
        timeout_s=1,
        max_retries=0,
    )
    assert isinstance(real, OpenAICompatibleLLM) and isinstance(real, LLM)
    assert (real.chat_model, real.embedding_model, real.dimensions) == ("m", "e", 8)
