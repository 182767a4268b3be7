"""The cheap check before a model call: could this window hold anything the tier can use?

A window's model call is spent only where it can find something. Before a tier asks the model, it reads the
user's words in the window with a few word patterns, no I/O and no model:

- semantic: a fact about the user is said in the first person ("I live in Porto", "my sister is Ana", "we got a
  dog"), so a window none of whose statements speaks of the user (questions about the world, thanks, "ok") holds
  no fact;
- procedural: a preference, habit or instruction names itself ("I prefer", "I always", "every Sunday", "please",
  "from now on", "keep it short", "in Portuguese"), so a window without any of those words holds none;
- episodic: a window of greetings and thanks only is small talk, worth no episode.

The check errs towards the call: a word that might start a fact or a rule is enough, a window is checked as a
whole (the jobs' context travels with it), and a window with words the check cannot read (not English) always gets
its call. A window it passes is learned as before; a window it stops is
recorded empty with the tier's usual reason, without a model call. How often it is wrong is measured on
conversations with annotated facts (`make bench-check`, bench/results/check.json).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from reverie.domain.tiers import Tier
from reverie.jobs.message import ReflectionJob


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n+")
_WORDS = re.compile(r"[a-z0-9']+")

# The user speaking of themselves (or of their own: "my", "our", "we").
_SELF = re.compile(
    r"\b(?:i|i'm|im|i've|ive|i'd|i'll|me|my|mine|myself|we|we're|we've|we'd|we'll|us|our|ours|ourselves)\b"
)
# In a question, the user's own things and doings still say something about them ("since I moved, ...?", "can you
# help me plan my sister's wedding?"), while "how do I ...", "what should I ..." (the user asking) do not.
_OWN_IN_QUESTION = frozenset(("my", "mine", "our", "ours", "i'm", "im", "i've", "ive", "we're", "we've"))
_ASKING = frozenset(("do", "does", "did", "can", "could", "should", "would", "will", "shall", "may", "might", "must",
                     "am", "are", "was", "were", "have", "shouldn't", "can't", "couldn't", "wouldn't", "don't"))
# Words that only keep a conversation going: a sentence made of them alone says nothing about the user.
_FILLER = _vocabulary(
    "i me my we us ok okay oh ah hmm yes yeah yep no nope sure right thanks thank you so much a lot very really "
    "great cool nice good awesome wow lol haha see agree understand think guess mean know got it that's that this "
    "makes sense totally absolutely exactly true indeed hi hello hey bye goodbye morning night evening afternoon "
    "welcome sorry please too well alright all fine interesting glad to hear"
)
# What a user says about the conversation itself ("I tried that but it didn't work", "I don't understand"): no fact.
_ABOUT_THE_CONVERSATION = _vocabulary(
    "tried try trying that it this these those but didn't did does doesn't don't do not work works worked working "
    "understand understood mean meant asked asking ask want wanted need needed see saw know knew think thought guess "
    "still again already before yet sure confused lost follow follows clear help helped helps helpful answer answers "
    "question questions example examples one ones first second third last part point bit more less follow-up "
    "said say says get gets getting same different either way right wrong was were be is are can could would will "
    "an the just now then too also only any some other thing things something anything"
)
_SMALL_TALK = _vocabulary(
    "hi hello hey hiya yo thanks thank you thx ok okay k bye goodbye cya later see you good morning night evening "
    "afternoon cool nice great sure yes no yeah yep nope lol haha fine alright"
)
_LANGUAGES = (r"english|portuguese|spanish|french|german|italian|dutch|polish|japanese|chinese|mandarin|korean|"
              r"russian|arabic|hindi|turkish|swedish|greek|ukrainian|catalan")
_TIMES = (r"day|days|morning|mornings|evening|evenings|night|nights|week|weeks|weekend|weekends|month|year|time|"
          r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|mondays|tuesdays|wednesdays|thursdays|"
          r"fridays|saturdays|sundays|lunch|lunchtime|summer|winter")
# A preference, a habit or a standing instruction names itself with one of these.
_RULE = re.compile(
    # what the user likes or avoids, and what they are into
    r"\b(?:i|we)\b[^.!?]{0,30}?\b(?:prefer\w*|like|liked|likes|love|loved|loves|enjoy\w*|hate\w*|dislike\w*|adore\w*|"
    r"can't stand|cannot stand|avoid\w*|rather)\b"
    r"|\b(?:i'm|im|i am|we're|we are)\s+(?:\w+\s+){0,2}(?:fan of|fans of|vegan|vegetarian|allergic|passionate|into|"
    r"obsessed|addicted|a morning person|a night owl)\b"
    r"|\bfavou?rite\b|\bmy\s+(?:\w+\s+)?(?:passion|muse|muses|hobby|hobbies|routine|habit|thing)\b"
    # habits
    rf"|\b(?:always|never|usually|often|normally|typically|generally|mostly|rarely|seldom|regularly|sometimes|"
    rf"tend to|used to|habit\w*|routine\w*)\b|\b(?:every|each|most|on|once a|twice a)\s+(?:{_TIMES})\b"
    # standing instructions to the assistant, and how answers should be
    rf"|\b(?:from now on|in the future|going forward|next time|call me|address me)\b"
    rf"|\bplease\s+(?:always|never|don't|do not|stop|keep|use|answer|reply|respond|write|talk|speak|call|be|"
    rf"remember|avoid|make|include|add|give|explain|format)\b"
    rf"|\bremember\s+(?:that|to|my|i|me)\b"
    rf"|\b(?:don't|do not|stop|quit)\s+(?:ever\s+)?(?:use|using|give|giving|send|sending|write|writing|suggest\w*|"
    rf"recommend\w*|answer\w*|reply\w*|talk\w*|say|saying|call|calling|mention\w*|add|adding|include\w*)\b"
    rf"|\bkeep\s+(?:it|them|things|your|answers|replies|responses)\b"
    rf"|\b(?:answer|reply|respond|write|talk|speak|chat|explain|communicate)\w*\b[^.!?]{{0,20}}?\b(?:in\s+)?(?:{_LANGUAGES})\b"
    rf"|\b(?:use|prefer|only|always)\s+(?:{_LANGUAGES})\b"
    rf"|\b(?:bullet\w*|markdown|emoji\w*|metric|imperial|celsius|fahrenheit|tone|verbose|wordy)\b"
    rf"|\b(?:short|shorter|brief|briefer|concise|long|longer|detailed|simple|simpler|formal|informal|casual|plain)"
    rf"\s+(?:answers?|replies|responses?|explanations?|language|english|words|sentences)\b"
    rf"|\bbe\s+(?:more\s+|less\s+)?(?:brief|concise|formal|casual|direct|short|detailed|polite|friendly)\b"
)
# Whether the check can read a message: English words it knows, against the commonest words of the languages it
# does not (Spanish, Portuguese, French, German, Italian, Dutch). Letters outside ASCII (another script) make a
# message unreadable too. A window with a message the check cannot read gets its model call.
_ENGLISH = _vocabulary(
    "the and to of is are was were you your it it's i i'm i've that this what how with for have has had my can would "
    "will could should just about from been they she there which who not but if get got me"
)
_FOREIGN = _vocabulary(
    "el la los las que en y es un una por con para del al lo le su sus mi yo tengo estoy muy pero como o os as do da "
    "em no na um uma eu você é não com meu minha tenho estou ich und der die das nicht ist bin mein meine ein eine "
    "mit für auf auch les et je tu vous est il elle une dans pour avec mon ma suis pas che di non sono ho io il "
    "della per ik het een niet ben mijn"
)
# "Tell me ...", "help me ...": the user as the object of a request says nothing about them.
_REQUEST_OBJECT = re.compile(
    r"\b(?:tell|give|show|help|let|remind|teach|send|get|find|make|explain to|write|recommend|suggest to|ask|"
    r"bring|lend|buy|email|text|sing|draw|read|pass|hand|walk|guide|quiz|surprise|excuse)\s+(?:me|us)\b"
    r"|\bfor (?:me|us)\b|\bwith (?:me|us)\b"
)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCES.split(text) if s.strip()]


def user_texts(jobs: Iterable[ReflectionJob]) -> list[str]:
    """What the user said in these jobs (the tiers learn about the user from the user's words)."""
    return [t.content for job in jobs for t in job.turns if t.role == "user"]


def readable(text: str) -> bool:
    """Whether the check can read this message: English, as far as its commonest words and its letters tell."""
    letters = [c for c in text if c.isalpha()]
    if letters and sum(not c.isascii() for c in letters) > len(letters) // 5:
        return False
    words = _WORDS.findall(text.lower().replace("’", "'"))
    return sum(w in _FOREIGN for w in words) <= sum(w in _ENGLISH for w in words)


def might_state_a_fact(text: str) -> bool:
    """Could this message state a fact about the user? True for any statement in the first person that is more
    than conversational filler, and for a question that names the user's own things or doings."""
    for sentence in sentences(text.lower().replace("’", "'")):
        words = _WORDS.findall(sentence)
        if sentence.endswith("?"):
            if _speaks_of_self_in_question(words):
                return True
            continue
        if not _SELF.search(_REQUEST_OBJECT.sub(" ", sentence)):
            continue
        if not set(words) <= _FILLER | _ABOUT_THE_CONVERSATION:
            return True
    return False


def _speaks_of_self_in_question(words: list[str]) -> bool:
    """A question naming the user's own things, or the user doing something ("since I moved, ..."), not merely the
    user asking ("how do I", "what should I", "can I")."""
    for k, word in enumerate(words):
        if word in _OWN_IN_QUESTION:
            return True
        if word in ("i", "we") and k + 1 < len(words) and (k == 0 or words[k - 1] not in _ASKING):
            return True
    return False


def might_state_a_rule(text: str) -> bool:
    """Could this message state a preference, a habit or an instruction? True when any of their words is in it."""
    return bool(_RULE.search(text.lower().replace("’", "'")))


def is_small_talk(text: str) -> bool:
    """A greeting, thanks or an acknowledgement, and nothing else."""
    words = _WORDS.findall(text.lower().replace("’", "'"))
    return not words or (len(words) <= 6 and set(words) <= _SMALL_TALK | _FILLER)


def worth_a_call(tier: Tier, jobs: Sequence[ReflectionJob]) -> bool:
    """Whether the tier's model call could find anything in these jobs (see the module docstring)."""
    texts = user_texts(jobs)
    tier = Tier(tier)
    if not all(readable(t) for t in texts):
        return True
    if tier is Tier.SEMANTIC:
        return any(might_state_a_fact(t) for t in texts)
    if tier is Tier.PROCEDURAL:
        return any(might_state_a_rule(t) for t in texts)
    return not all(is_small_talk(t) for t in texts)
