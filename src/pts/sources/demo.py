"""The demo source: a scriptable mock LLM that needs no network.

- `echo:TEXT` streams TEXT back verbatim in pieces of 1–4 characters;
- `fail-after:N:TEXT` streams TEXT exactly as `echo:TEXT` would, then raises
  `DemoSourceError` after N pieces (after the last one if there are fewer);
- `history:TEXT` streams back, as `echo:` would, the conversation it was given: a line
  `user: <prompt>` or `assistant: <reply>` per earlier turn (newlines in them as `\n`), then
  `user: <this prompt>`, so tests see what a real source receives;
- `pause-after:N:SECONDS:TEXT` streams TEXT exactly as `echo:TEXT` would, but goes silent
  for SECONDS after N pieces (after the last one if there are fewer), as a reasoning model
  thinking or a tool call would, then goes on;
- anything else gets a deterministic English reply of `reply_tokens` tokens: sentences of
  8–30 tokens, paragraphs, now and then a short bulleted list.

Everything is seeded by the prompt with a fixed PRNG (not `random`), so the same prompt gives
byte-for-byte the same reply on every Python version; the benchmark workload ("reply-2000")
is `demo_reply_tokens(prompt, 2000)`. Tokens are cut roughly as an LLM's are (a
word with its following space, punctuation apart, long words in two): about 4 bytes each, so
2,000 tokens are about 8 KB.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import NamedTuple, TypeVar

from pts.sources.base import DEFAULT_HISTORY_BUDGET, GenerationRequest, Turn

DEFAULT_REPLY_TOKENS = 300
DEFAULT_TOKENS_PER_SECOND = 50.0

_FAIL_AFTER = re.compile(r"fail-after:(\d+):", re.ASCII)
_PAUSE_AFTER = re.compile(r"pause-after:(\d+):(\d+(?:\.\d+)?):", re.ASCII)
_N = TypeVar("_N", int, float)


class DemoSourceError(RuntimeError):
    """The failure a `fail-after:N:` prompt asks for."""


class _Rng:
    """SplitMix64: tiny, fast, and unlike `random` its sequence is ours to keep stable."""

    __slots__ = ("_state",)

    def __init__(self, seed_text: str) -> None:
        digest = hashlib.sha256(seed_text.encode("utf-8", "surrogatepass")).digest()
        self._state = int.from_bytes(digest[:8], "big")

    def _next(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        return self._next() % n  # bias of n / 2**64 is irrelevant here

    def between(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        return low + self.below(high - low + 1)

    def chance(self, p: float) -> bool:
        return self._next() < p * 2**64

    def pick(self, items: Sequence[str]) -> str:
        return items[self.below(len(items))]


# --- vocabulary (about 400 words) ------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(text.split()))  # dedupe, keep the order


_NOUNS = _words(
    "stream system reply message token batch table client server viewer page request "
    "response model answer question idea detail approach design pattern method function "
    "record item key value field index query update change event signal queue worker task "
    "job process thread loop buffer cache store layer service endpoint route handler user "
    "team project goal plan step stage phase part piece section chapter example case test "
    "result number amount size limit rate cost price budget time moment second minute hour "
    "day week month year history future past problem issue error failure fix solution "
    "answer reason cause effect trade-off choice option default setting feature tool "
    "library package module file folder path name label word sentence paragraph text "
    "story note list summary report review draft version release branch commit network "
    "connection socket channel protocol format schema contract rule policy boundary edge "
    "core center surface level depth width shape structure framework platform region "
    "account owner reader writer author editor browser window tab screen device machine "
    "engine driver pipeline workflow signal metric graph chart trend pattern habit"
)

_ADJECTIVES = _words(
    "small large simple clear quick slow steady careful useful common rare early late "
    "short long new old good better best bad worse safe risky cheap expensive local "
    "remote public private shared single whole partial final initial main basic "
    "important different similar separate exact rough fair honest strong weak quiet "
    "busy idle live stale fresh recent previous next current extra optional required "
    "stable reliable durable visible hidden open closed complete empty full light heavy "
    "modern classic practical realistic typical natural obvious subtle careful gentle "
    "quiet bright sharp smooth linear flat narrow broad deep shallow"
)

_VERBS = (
    ("keep", "keeps"),
    ("send", "sends"),
    ("write", "writes"),
    ("read", "reads"),
    ("store", "stores"),
    ("show", "shows"),
    ("hold", "holds"),
    ("change", "changes"),
    ("follow", "follows"),
    ("reach", "reaches"),
    ("build", "builds"),
    ("check", "checks"),
    ("find", "finds"),
    ("make", "makes"),
    ("take", "takes"),
    ("give", "gives"),
    ("use", "uses"),
    ("need", "needs"),
    ("carry", "carries"),
    ("move", "moves"),
    ("track", "tracks"),
    ("handle", "handles"),
    ("explain", "explains"),
    ("describe", "describes"),
    ("improve", "improves"),
    ("reduce", "reduces"),
    ("protect", "protects"),
    ("support", "supports"),
    ("replace", "replaces"),
    ("create", "creates"),
    ("remove", "removes"),
    ("split", "splits"),
    ("join", "joins"),
    ("mark", "marks"),
    ("watch", "watches"),
    ("catch", "catches"),
    ("push", "pushes"),
    ("pull", "pulls"),
    ("save", "saves"),
    ("load", "loads"),
    ("shape", "shapes"),
    ("guide", "guides"),
    ("limit", "limits"),
    ("match", "matches"),
    ("share", "shares"),
    ("reuse", "reuses"),
    ("avoid", "avoids"),
    ("measure", "measures"),
    ("compare", "compares"),
    ("deliver", "delivers"),
    ("collect", "collects"),
    ("publish", "publishes"),
    ("repeat", "repeats"),
    ("simplify", "simplifies"),
    ("clarify", "clarifies"),
    ("connect", "connects"),
    ("finish", "finishes"),
    ("start", "starts"),
    ("open", "opens"),
    ("close", "closes"),
)

_ADVERBS = _words(
    "quickly slowly quietly clearly simply usually often rarely always never already "
    "still also even only mostly nearly exactly roughly gently steadily safely easily "
    "carefully directly eventually finally"
)

_PREPOSITIONS = _words(
    "in on at for from with without into over under across through between behind "
    "beside near after before during about around against along toward within"
)

_DETERMINERS = ("the", "the", "the", "a", "a", "each", "every", "this", "that", "our", "one")

_OPENERS = (
    "In practice",
    "In short",
    "Of course",
    "For example",
    "As a result",
    "In most cases",
    "At first",
    "Over time",
    "Even so",
    "On the other hand",
    "To be fair",
    "In other words",
    "Most of the time",
    "For now",
    "Later on",
    "Still",
    "Meanwhile",
    "Instead",
    "However",
    "Then",
)

_CONJUNCTIONS = ("and", "but", "so", "while", "because", "although", "since", "until", "or")
_MODALS = ("can", "should", "will", "may", "must", "might", "could", "would")
_QUESTION_STARTS = ("Does", "Can", "Should", "Will", "Could", "Would", "Why does", "How does")

_LIST_INTROS = (
    "Here are the main points to keep in mind:",
    "A few things are worth checking first:",
    "In short, the plan looks like this:",
    "The key steps are these:",
    "Some details matter more than others:",
    "Here is what usually helps:",
)

# Replies shorter than one sentence (and the last few tokens of any reply) end with one of
# these, indexed by length in tokens.
_CLOSINGS = (
    "",
    "Done.",
    "Good luck!",
    "Hope this helps.",
    "I hope this helps.",
    "That is all for now.",
    "Let me know how it goes.",
    "Feel free to ask me anything else.",
)

_A_BEFORE_VOWEL = frozenset({"user", "useful", "usual", "unit", "universal", "one"})
_AN_BEFORE_H = frozenset({"hour", "honest"})


def _article(word: str) -> str:
    if word in _AN_BEFORE_H:
        return "an"
    return "an" if word[0] in "aeiou" and word not in _A_BEFORE_VOWEL else "a"


# --- grammar -----------------------------------------------------------------------------------


def _noun_phrase(rng: _Rng, allow_pp: bool = True) -> list[str]:
    det = rng.pick(_DETERMINERS)
    words: list[str] = []
    if rng.chance(0.55):
        words.append(rng.pick(_ADJECTIVES))
        if rng.chance(0.15):
            words.append(rng.pick(_ADJECTIVES))
    words.append(rng.pick(_NOUNS))
    if det == "a":
        det = _article(words[0])
    phrase = [det, *words]
    if allow_pp and rng.chance(0.25):
        phrase += [rng.pick(_PREPOSITIONS), *_noun_phrase(rng, allow_pp=False)]
    return phrase


def _verb_phrase(rng: _Rng, third_person: bool = True) -> list[str]:
    base, third = _VERBS[rng.below(len(_VERBS))]
    phrase: list[str] = []
    if third_person and rng.chance(0.3):  # "Does X can Y?" is not English
        phrase += [rng.pick(_MODALS), base]
    else:
        if rng.chance(0.2):
            phrase.append(rng.pick(_ADVERBS))
        phrase.append(third if third_person else base)
    phrase += _noun_phrase(rng)
    if rng.chance(0.45):
        phrase += [rng.pick(_PREPOSITIONS), *_noun_phrase(rng, allow_pp=False)]
    if rng.chance(0.15):
        phrase.append(rng.pick(_ADVERBS))
    return phrase


def _clause(rng: _Rng) -> list[str]:
    return _noun_phrase(rng) + _verb_phrase(rng)


def _sentence_words(rng: _Rng) -> list[str]:
    """One sentence as words, its punctuation attached, first word capitalised."""
    roll = rng.below(100)
    if roll < 8:  # a question
        words = rng.pick(_QUESTION_STARTS).split() + _noun_phrase(rng)
        words += _verb_phrase(rng, third_person=False)
        end = "?"
    else:
        words = []
        if rng.chance(0.25):
            opener = rng.pick(_OPENERS).split()
            opener[-1] += ","
            words += opener
        words += _clause(rng)
        if rng.chance(0.4):
            words[-1] += ","
            words += [rng.pick(_CONJUNCTIONS), *_clause(rng)]
        end = "!" if roll < 12 else "."
    words[0] = words[0][0].upper() + words[0][1:]
    words[-1] += end
    return words


def _tokens_of(words: list[str]) -> list[str]:
    """Words → tokens, roughly as a BPE tokenizer cuts English (about 4 bytes each).

    The following space belongs to the token; trailing punctuation is a token of its own;
    words of 6 letters or more are split in two.
    """
    tokens: list[str] = []
    for word in words:
        core = word.rstrip(",.!?:")
        tail = word[len(core) :]
        if len(core) >= 6:
            cut = len(core) // 2
            tokens.append(core[:cut])
            core = core[cut:]
        if tail:
            tokens += [core, tail + " "]
        else:
            tokens.append(core + " ")
    return tokens


def _sentence(rng: _Rng, low: int, high: int) -> list[str]:
    """A sentence of `low`–`high` tokens (exactly `low` if they are equal)."""
    for _ in range(500):
        tokens = _tokens_of(_sentence_words(rng))
        if low <= len(tokens) <= high:
            return tokens
    # Practically unreachable; keep the contract anyway by trimming a long sentence.
    while len(tokens := _tokens_of(_sentence_words(rng))) < high:
        pass
    tokens = tokens[:high]
    tokens[-1] = tokens[-1].rstrip(" ,") + ". "
    return tokens


def _closing(n: int) -> list[str]:
    """A closing sentence of exactly `n` (0–7) tokens, one per word."""
    return [word + " " for word in _CLOSINGS[n].split()]


def _bulleted_list(rng: _Rng) -> list[str]:
    """An introducing line, then 3–5 short items, the whole block ending in a blank line."""
    tokens = _tokens_of(rng.pick(_LIST_INTROS).split())
    tokens[-1] = tokens[-1].rstrip(" ") + "\n\n"
    for _ in range(rng.between(3, 5)):
        while True:
            words = _noun_phrase(rng)[1:] if rng.chance(0.6) else _clause(rng)
            item = _tokens_of(words)
            if 2 <= len(item) <= 8:
                break
        item[0] = item[0][0].upper() + item[0][1:]
        item[-1] = item[-1].rstrip(" ") + "\n"
        tokens += ["- ", *item]
    tokens[-1] += "\n"
    return tokens


def demo_reply_tokens(prompt: str, tokens: int) -> list[str]:
    """The deterministic English reply to `prompt`, exactly `tokens` tokens long.

    Pure and unpaced: the demo source streams this list, and benchmarks use it directly.
    """
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    rng = _Rng("reply\0" + prompt)
    out: list[str] = []
    paragraph_left = rng.between(2, 5)  # sentences left in the current paragraph
    while (remaining := tokens - len(out)) > 0:
        if paragraph_left == 0:
            out[-1] = out[-1].rstrip(" ") + "\n\n"
            paragraph_left = rng.between(2, 5)
            if remaining > 80 and rng.chance(0.25):
                out += _bulleted_list(rng)  # at most 58 tokens, so a sentence still fits
                continue
        if remaining <= 7:
            out += _closing(remaining)
        elif remaining <= 30:
            out += _sentence(rng, remaining, remaining)
        else:
            out += _sentence(rng, 8, 30)
        paragraph_left -= 1
    if out:
        out[-1] = out[-1].rstrip()
    return out


def echo_pieces(text: str) -> list[str]:
    """`text` cut into pieces of 1–4 characters, the cut seeded by the text itself."""
    rng = _Rng("echo\0" + text)
    pieces: list[str] = []
    i = 0
    while i < len(text):
        n = rng.between(1, 4)
        pieces.append(text[i : i + n])
        i += n
    return pieces


def history_transcript(prompt: str, history: Sequence[Turn]) -> str:
    """What `history:` streams back: one line per message, each turn's newlines as `\n`."""

    def line(role: str, text: str) -> str:
        return f"{role}: " + text.replace("\n", "\\n")

    lines: list[str] = []
    for turn in history:
        lines += [line("user", turn.prompt), line("assistant", turn.reply)]
    lines.append(line("user", prompt))
    return "\n".join(lines)


class DemoScript(NamedTuple):
    """What the demo source does for a prompt."""

    pieces: list[str]
    fail_after: int | None = None
    """Raise after this many pieces (`fail-after:`)."""
    pause_after: int | None = None
    """Go silent for `pause_seconds` after this many pieces (`pause-after:`)."""
    pause_seconds: float = 0.0


def demo_script(prompt: str, reply_tokens: int, history: Sequence[Turn] = ()) -> DemoScript:
    """What the demo source does for `prompt`: the pieces, and where it fails or pauses."""
    if prompt.startswith("history:"):
        return DemoScript(echo_pieces(history_transcript(prompt, history)))
    if prompt.startswith("echo:"):
        return DemoScript(echo_pieces(prompt[len("echo:") :]))
    if match := _FAIL_AFTER.match(prompt):
        return DemoScript(echo_pieces(prompt[match.end() :]), fail_after=int(match.group(1)))
    if match := _PAUSE_AFTER.match(prompt):
        return DemoScript(
            echo_pieces(prompt[match.end() :]),
            pause_after=int(match.group(1)),
            pause_seconds=float(match.group(2)),
        )
    return DemoScript(demo_reply_tokens(prompt, reply_tokens))


class DemoSource:
    """The demo source, paced at `tokens_per_second` (0 or less: as fast as possible)."""

    history_budget = DEFAULT_HISTORY_BUDGET

    def __init__(
        self,
        reply_tokens: int = DEFAULT_REPLY_TOKENS,
        tokens_per_second: float = DEFAULT_TOKENS_PER_SECOND,
    ) -> None:
        if reply_tokens < 0:
            raise ValueError(f"reply_tokens must be >= 0, got {reply_tokens}")
        self.reply_tokens = reply_tokens
        self.tokens_per_second = tokens_per_second

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DemoSource:
        """Read `PTS_DEMO_REPLY_TOKENS` and `PTS_DEMO_TOKENS_PER_SECOND`."""
        return cls(
            reply_tokens=_env_number(env, "PTS_DEMO_REPLY_TOKENS", DEFAULT_REPLY_TOKENS, int),
            tokens_per_second=_env_number(
                env, "PTS_DEMO_TOKENS_PER_SECOND", DEFAULT_TOKENS_PER_SECOND, float
            ),
        )

    def __repr__(self) -> str:
        return (
            f"DemoSource(reply_tokens={self.reply_tokens}, "
            f"tokens_per_second={self.tokens_per_second})"
        )

    async def __call__(self, request: GenerationRequest) -> AsyncIterator[str]:
        pieces, fail_after, pause_after, pause_seconds = demo_script(
            request.prompt, self.reply_tokens, request.history
        )
        if pause_after is not None:
            pause_after = min(pause_after, len(pieces))
        rate = self.tokens_per_second
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, piece in enumerate(pieces):
            if fail_after is not None and i >= fail_after:
                break
            if i == pause_after:
                await asyncio.sleep(pause_seconds)
                start += pause_seconds  # the schedule goes on after the silence
            if rate > 0:
                # Absolute schedule: piece i is due at start + i/rate, so delays never add up.
                delay = start + i / rate - loop.time()
                await asyncio.sleep(max(delay, 0.0))
            else:
                await asyncio.sleep(0)  # still a checkpoint: fair to others, cancellable
            yield piece
        if pause_after is not None and pause_after == len(pieces):
            await asyncio.sleep(pause_seconds)  # silent after the last piece, then the end
        if fail_after is not None:
            sent = min(fail_after, len(pieces))
            raise DemoSourceError(f"demo source failed after {sent} pieces (fail-after)")


def _env_number(env: Mapping[str, str], name: str, default: _N, kind: Callable[[str], _N]) -> _N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
