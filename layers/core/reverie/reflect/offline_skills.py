"""The offline model's reflection skills: deterministic extraction and reconciliation, good enough for a demo.

First-person statements become facts ("I live in Porto" -> "User lives in Porto"), "I prefer / I always /
please always ..." become rules, and a new value for a one-value slot ("I moved to Berlin") supersedes the
old one. Registered with the offline model at import time; `reverie.reflect` imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from reverie.llm.offline import register_skill
from reverie.reflect import prompts

# ---------------------------------------------------------------- text helpers

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
# "I live in Porto and I always take the train": each first-person clause is its own statement.
_CLAUSE_SPLIT = re.compile(r",?\s+(?:and|but|so|because)\s+(?=i\b|i'|my\b|please\b|always\b|never\b)", re.I)
_WORD = re.compile(r"[\w']+")
_NAME = re.compile(r"\b[A-Z][a-zà-ÿ]+(?:\s+[A-Z][a-zà-ÿ]+)*")

# Where a value ends: "Berlin last year" -> "Berlin".
_VALUE_END = re.compile(
    r"\s+(?:last|this|next|recently|ago|since|because|for|when|after|before|now|today|yesterday|lately|"
    r"already|again|too|as well|though|although|which|who|where|while|until|(?:in|on|at) (?:the )?\d)\b.*$",
    re.I,
)

_IRREGULAR_THIRD = {"have": "has", "do": "does", "go": "goes", "be": "is", "am": "is"}
_UNCHANGED_VERBS = {
    "was", "were", "had", "did", "went", "got", "made", "took", "came", "saw", "met", "left", "began", "bought",
    "sold", "grew", "knew", "thought", "found", "gave", "told", "felt", "kept", "lost", "spent", "won", "wrote",
    "ran", "drove", "flew", "ate", "drank", "can", "could", "should", "would", "will", "must", "may", "might",
}
_ADVERBS = {"also", "really", "still", "just", "now", "actually", "currently", "already", "recently", "mostly"}
_HABIT_ADVERBS = ("always", "never", "usually", "often", "normally", "typically", "rarely", "sometimes")
_PRONOUNS = {"my": "their", "me": "them", "myself": "themselves", "mine": "theirs", "i": "they", "i'm": "they're",
             "am": "are"}

# First-person openings that are not facts about the user: opinions, requests, hedges, politeness.
_NOT_FACTS = re.compile(
    r"^i(?:'m| am)? ?(?:think|guess|wonder|wondering|hope|want|wanted|would|'d|will|'ll|can|can't|cannot|could|"
    r"should|might|need|needed|mean|agree|understand|know|see|suppose|believe|feel like|was wondering|"
    r"just wanted|don't know|do not know|not sure|'m not sure|am not sure|prefer|would prefer|'d prefer|"
    r"always|never|usually|often|normally|typically|rarely|sometimes|sorry|glad|happy|sad|fine|ok|okay|good|"
    r"great|tired|bored|excited|curious|confused|trying|looking|going|thinking|asking|here|back|done|ready|"
    r"afraid|worried|like it when)\b",
    re.I,
)

_SINGLE_VALUED_RELATIONS = {
    "name", "wife", "husband", "partner", "boyfriend", "girlfriend", "fiancé", "fiance", "fiancée", "fiancee",
    "birthday", "email", "email address", "phone", "phone number", "job", "employer", "age", "address",
    "home town", "hometown", "boss", "manager", "doctor", "dentist",
}
_PEOPLE = {
    "sister", "brother", "mother", "father", "mom", "mum", "dad", "son", "daughter", "wife", "husband",
    "partner", "boyfriend", "girlfriend", "friend", "best friend", "boss", "manager", "colleague", "cousin",
    "aunt", "uncle", "grandmother", "grandfather", "grandma", "grandpa", "niece", "nephew", "fiancé", "fiancee",
    "fiance", "fiancée", "doctor", "dentist", "neighbour", "neighbor", "roommate", "teacher", "coach",
}
_LANGUAGES = {
    "english", "portuguese", "spanish", "french", "german", "italian", "dutch", "polish", "japanese", "chinese",
    "mandarin", "korean", "russian", "arabic", "hindi", "turkish", "swedish", "greek", "ukrainian", "catalan",
}
_GREETINGS = {"hi", "hello", "hey", "thanks", "thank you", "ok", "okay", "bye", "goodbye", "good morning",
              "good night", "cool", "nice", "great", "yes", "no", "sure", "lol"}
_LIFE_EVENTS = re.compile(
    r"\b(?:married|wedding|born|pregnant|moved|moving|died|passed away|funeral|new job|hired|fired|promoted|"
    r"graduated|divorce|hospital|surgery|engaged|retired|baby|accident|diagnosed)\b",
    re.I,
)


def sentences(text: str) -> list[str]:
    """Statements of a message: sentences, and first-person clauses joined by 'and', 'but', 'so'."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        for clause in _CLAUSE_SPLIT.split(sentence.strip()):
            clause = clause.strip()
            if clause:
                out.append(clause)
    return out


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip(" \t,;:-")


def _value(text: str) -> str:
    return _clean(_VALUE_END.sub("", _clean(text).rstrip(".!?")))


def _third_person_verb(verb: str) -> str:
    low = verb.lower()
    if low in _IRREGULAR_THIRD:
        return _IRREGULAR_THIRD[low]
    if low in _UNCHANGED_VERBS or low.endswith("ed") or low.endswith("n't"):
        return verb
    if re.search(r"(?:s|sh|ch|x|z|o)$", low):
        return verb + "es"
    if re.search(r"[^aeiou]y$", low):
        return verb[:-1] + "ies"
    return verb + "s"


def _swap_pronouns(text: str) -> str:
    return re.sub(r"\b(?:my|me|myself|mine|i'm|i|am)\b",
                  lambda m: _PRONOUNS[m.group(0).lower()], text, flags=re.I)


def third_person(clause: str) -> str | None:
    """'I take the train' -> 'User takes the train'; None when the clause does not start with 'I'."""
    clause = _clean(clause).rstrip(".!")
    match = re.match(r"^i(?:'m| am)\s+(?P<rest>.+)$", clause, re.I)
    if match:
        return "User is " + _swap_pronouns(match.group("rest"))
    match = re.match(r"^i(?:'ve| have)\s+(?P<rest>.+)$", clause, re.I)
    if match:
        return "User has " + _swap_pronouns(match.group("rest"))
    match = re.match(r"^i (?:do not|don't) (?P<rest>.+)$", clause, re.I)
    if match:
        return "User does not " + _swap_pronouns(match.group("rest"))
    match = re.match(r"^i\s+(?P<words>.+)$", clause, re.I)
    if not match:
        return None
    words = match.group("words").split()
    out = []
    while words and words[0].lower() in _ADVERBS | set(_HABIT_ADVERBS):
        out.append(words.pop(0))
    if not words:
        return None
    out.append(_third_person_verb(words.pop(0)))
    return "User " + _swap_pronouns(" ".join(out + words))


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _names(text: str) -> list[str]:
    return [n for n in _NAME.findall(text) if n not in {"I", "User"}]


def _entities(value: str, kind: str) -> list[dict[str, str]]:
    names = _names(value)
    return [{"name": n, "type": kind} for n in names] if names else []


# ---------------------------------------------------------------- semantic: facts


def _snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


_FACT_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"^i(?: now)? (?:live|am living|'m living|reside|am based|'m based) in (?P<v>.+)$", re.I),
     lambda v: (f"User lives in {v}", "home_city", _entities(v, "place"))),
    (re.compile(r"^i(?: have|'ve)?(?: just| recently| finally)? (?:moved|relocated) to (?P<v>.+)$", re.I),
     lambda v: (f"User lives in {v}", "home_city", _entities(v, "place"))),
    (re.compile(r"^i (?:now )?(?:work|am working|'m working) as (?:a |an )?(?P<v>.+)$", re.I),
     lambda v: (f"User works as {_article(v)}{v}", "job_title", [])),
    (re.compile(r"^i(?: now)? (?:work|am working|'m working) (?:at|for) (?P<v>.+)$", re.I),
     lambda v: (f"User works at {v}", "employer", _entities(v, "organization"))),
    (re.compile(r"^i(?: have| just|'ve)?(?: just)? (?:started working (?:at|for)|joined) (?P<v>.+)$", re.I),
     lambda v: (f"User works at {v}", "employer", _entities(v, "organization"))),
    (re.compile(r"^(?:my name is|call me|i am called|i'm called) (?P<v>.+)$", re.I),
     lambda v: (f"User's name is {v}", "name", _entities(v, "person"))),
    (re.compile(r"^i(?: am|'m) (?P<v>\d{1,3}) years? old$", re.I),
     lambda v: (f"User is {v} years old", "age", [])),
    (re.compile(r"^i(?: am|'m|come) (?:originally )?from (?P<v>.+)$", re.I),
     lambda v: (f"User is from {v}", "origin", _entities(v, "place"))),
    (re.compile(r"^i was born in (?P<v>.+)$", re.I),
     lambda v: (f"User was born in {v}", "birthplace", _entities(v, "place"))),
]
_MY_RELATION = re.compile(
    r"^my (?P<rel>[a-zà-ÿ' -]{2,30}?)(?:'s name)? (?:is|are) (?:called |named )?(?P<v>.+)$", re.I
)


def _article(value: str) -> str:
    return "an " if value[:1].lower() in "aeiou" else "a "


def fact_from_clause(clause: str) -> tuple[str, str | None, list[dict[str, str]]] | None:
    """One statement -> (fact text, slot or None, entities), or None when it states no fact about the user."""
    clause = _clean(clause)
    if not clause or clause.endswith("?") or len(clause) > 160:
        return None
    clause = clause.rstrip(".!")
    for pattern, build in _FACT_PATTERNS:
        match = pattern.match(clause)
        if match:
            value = _value(match.group("v"))
            return build(value) if value else None
    match = _MY_RELATION.match(clause)
    if match:
        relation, value = match.group("rel").lower().strip(), _value(match.group("v"))
        if not value:
            return None
        single = relation in _SINGLE_VALUED_RELATIONS or relation.startswith(("favourite", "favorite"))
        kind = "person" if relation in _PEOPLE else "thing"
        return f"User's {relation} is {value}", (_snake(relation) if single else None), _entities(value, kind)
    if not re.match(r"^i\b", clause, re.I) or _NOT_FACTS.match(clause):
        return None
    if len(_words(clause)) < 3:
        return None
    text = third_person(clause)
    return (text, None, _entities(clause[1:], "thing")) if text else None


def _first_finds(messages: list[dict[str, str]], read_clause):
    """(job, find) for each user clause `read_clause` makes something of, once per text in a conversation."""
    for conversation in prompts.read_block(messages, prompts.CONVERSATIONS):
        seen: set[str] = set()
        for turn in conversation.get("turns", []):
            if turn.get("role") != "user":
                continue
            for clause in sentences(str(turn.get("text") or "")):
                found = read_clause(clause)
                if found and found[0].lower() not in seen:
                    seen.add(found[0].lower())
                    yield conversation["job"], found


@register_skill("extract_semantic")
def extract_semantic(messages: list[dict[str, str]], schema: type[BaseModel]) -> dict[str, Any]:
    return {"facts": [{"job": job, "text": text, "slot": slot, "entities": entities}
                      for job, (text, slot, entities) in _first_finds(messages, fact_from_clause)]}


# ---------------------------------------------------------------- procedural: rules


def rule_slot(text: str) -> str | None:
    low = text.lower()
    match = re.search(r"\b(?:answer|reply|replies|respond|responses|write|talk|speak|answers)\b.*?\bin (\w+)", low)
    if match and match.group(1) in _LANGUAGES:
        return "reply_language"
    if re.search(r"\b(?:short|shorter|brief|concise|long|longer|detailed|in depth|one sentence)\b", low) and re.search(
        r"\b(?:answers?|reply|replies|responses?|explanations?)\b|^(?:be|keep it)\b", low
    ):
        return "reply_length"
    if re.search(r"\b(?:bullet points?|bullets|tables?|markdown|plain text|prose|numbered lists?)\b", low):
        return "reply_format"
    if re.search(r"\b(?:formal|informal|casual|friendly|polite)\b", low):
        return "tone"
    return None


def rule_from_clause(clause: str) -> tuple[str, str] | None:
    """One statement -> (rule text, kind), or None. Kinds: preference, habit, instruction."""
    clause = _clean(clause)
    if not clause or clause.endswith("?") or len(clause) > 160:
        return None
    standing = re.match(r"^(?:from now on|in the future|going forward),?\s+(?P<v>.+)$", clause.rstrip(".!"), re.I)
    clause = standing.group("v") if standing else clause.rstrip(".!")
    match = re.match(r"^(?:please\s+)?(?:always)\s+(?P<v>.+)$", clause, re.I)
    if match:
        return f"Always {match.group('v')}", "instruction"
    match = re.match(r"^(?:please\s+)?(?:never|don't ever|do not ever)\s+(?P<v>.+)$", clause, re.I)
    if match:
        return f"Never {match.group('v')}", "instruction"
    if standing and not re.match(r"^i\b", clause, re.I):
        return _capitalise(clause), "instruction"
    match = re.match(r"^please\s+(?P<v>(?:answer|reply|respond|write|talk|speak|keep|use|call me|be)\b.+)$",
                     clause, re.I)
    if match:
        return _capitalise(match.group("v")), "instruction"
    match = re.match(r"^i(?: would|'d)? (?:really )?prefer (?P<v>.+)$", clause, re.I)
    if match:
        return f"User prefers {_swap_pronouns(match.group('v'))}", "preference"
    match = re.match(r"^i (?:want|would like|'d like) you to (?P<v>.+)$", clause, re.I)
    if match:
        return _capitalise(match.group("v")), "instruction"
    match = re.match(r"^i like it when you (?P<v>.+)$", clause, re.I)
    if match:
        return f"User likes it when the assistant {_third_person_verb(match.group('v').split()[0])} " + " ".join(
            match.group("v").split()[1:]
        ), "preference"
    match = re.match(rf"^i (?P<adv>{'|'.join(_HABIT_ADVERBS)}) (?P<v>.+)$", clause, re.I)
    if match:
        text = third_person(clause)
        return (text, "habit") if text else None
    match = re.match(r"^(?:every|each) (?P<when>\w+(?: \w+)?),? i (?P<v>.+)$", clause, re.I)
    if match:
        text = third_person("I " + match.group("v"))
        return (f"{text} every {match.group('when').lower()}", "habit") if text else None
    return None


@register_skill("extract_procedural")
def extract_procedural(messages: list[dict[str, str]], schema: type[BaseModel]) -> dict[str, Any]:
    return {"rules": [{"job": job, "text": text, "kind": kind, "slot": rule_slot(text)}
                      for job, (text, kind) in _first_finds(messages, rule_from_clause)]}


# ---------------------------------------------------------------- episodic: one episode per session


def _is_small_talk(text: str) -> bool:
    words = _words(text)
    return not words or " ".join(words) in _GREETINGS or (len(words) <= 2 and words[0] in _GREETINGS)


def _people(text: str) -> list[str]:
    found = re.findall(
        r"(?i:\bwith|\band|\bmet|\bnamed|\bcalled|\bmy (?:" + "|".join(sorted(_PEOPLE, key=len, reverse=True))
        + r")(?: is)?)\s+([A-Z][a-zà-ÿ]+)", text
    )
    return [name for name in found if name not in {"I", "User"}]


def episode_for(session: str, when: str | None, user_texts: Sequence[str]) -> dict[str, Any] | None:
    """The episode of one session batch, or None when it is only small talk."""
    statements: list[str] = []
    questions: list[str] = []
    for text in user_texts:
        if _is_small_talk(text):
            continue
        for clause in sentences(text):
            if len(_words(clause)) < 3:
                continue
            if clause.endswith("?"):
                questions.append(_clip(clause.rstrip("?"), 90))
                continue
            found = fact_from_clause(clause) or rule_from_clause(clause)
            said = found[0] if found else third_person(clause)
            statements.append(_clip(said or f'said "{clause.rstrip(".!")}"', 90))
    if not statements and not questions:
        return None
    parts = list(statements[:4])
    if questions and len(statements) < 2:
        parts.append("User asked: " + "; ".join(questions[:2]))
    facts = sum(1 for s in statements if s.startswith(("User ", "User's", "Always ", "Never ")))
    joined = " ".join(user_texts)
    importance = min(1.0, 0.2 + 0.1 * facts + (0.3 if _LIFE_EVENTS.search(joined) else 0.0))
    who: list[str] = []
    for name in _people(joined):
        if name not in who:
            who.append(name)
    return {"session": session, "when": when, "who": who, "summary": "; ".join(parts) + ".",
            "importance": round(importance, 2)}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@register_skill("extract_episodic")
def extract_episodic(messages: list[dict[str, str]], schema: type[BaseModel]) -> dict[str, Any]:
    sessions: dict[str, dict[str, Any]] = {}
    for conversation in prompts.read_block(messages, prompts.CONVERSATIONS):
        entry = sessions.setdefault(conversation["session"], {"when": None, "texts": []})
        entry["when"] = entry["when"] or str(conversation.get("at") or "")[:10] or None
        entry["texts"] += [str(t.get("text") or "") for t in conversation.get("turns", []) if t.get("role") == "user"]
    episodes = []
    for ref, entry in sessions.items():
        episode = episode_for(ref, entry["when"], entry["texts"])
        if episode:
            episodes.append(episode)
    return {"episodes": episodes}


# ---------------------------------------------------------------- reconciliation


def _tokens(text: str) -> set[str]:
    return {w for w in _words(text) if w not in {"user", "user's", "the", "a", "an", "is", "in", "at", "of"}}


def decide(item: dict[str, Any], candidate: dict[str, Any]) -> str | None:
    """The offline rule for one new item against one related memory: an action, or None when unrelated."""
    new, old = _tokens(item["text"]), _tokens(candidate["text"])
    if new == old:
        return "NOOP"
    if item.get("slot") and item.get("slot") == candidate.get("slot"):
        return "SUPERSEDE"
    if old and old < new:
        return "UPDATE"
    if new and new < old:
        return "NOOP"
    if new and old and len(new & old) / len(new | old) >= 0.8:
        return "NOOP"
    return None


@register_skill("reconcile_semantic")
@register_skill("reconcile_procedural")
def reconcile(messages: list[dict[str, str]], schema: type[BaseModel]) -> dict[str, Any]:
    records = {r["ref"]: r for r in prompts.read_block(messages, prompts.KNOWN)}
    decisions = []
    for item in prompts.read_block(messages, prompts.NEW):
        records[item["ref"]] = item
        chosen: tuple[str, str | None] = ("ADD", None)
        for ref in item.get("candidates", []):
            candidate = records.get(ref)
            action = decide(item, candidate) if candidate else None
            if action:
                chosen = (action, None if action == "NOOP" else ref)
                break
        decisions.append({"item": item["ref"], "action": chosen[0], "target": chosen[1], "reason": None})
    return {"decisions": decisions}
