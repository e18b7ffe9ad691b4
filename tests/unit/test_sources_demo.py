"""The demo source and the reply-2000 workload (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import re
import time
from itertools import pairwise

import pytest

from pts.sources import GenerationRequest, aiter_source
from pts.sources.demo import (
    DemoSource,
    DemoSourceError,
    demo_reply_tokens,
    demo_script,
    echo_pieces,
)

FAST = DemoSource(reply_tokens=300, tokens_per_second=0)


def run(source: DemoSource, prompt: str) -> list[str]:
    async def main() -> list[str]:
        request = GenerationRequest(prompt=prompt, stream_id="s")
        return [piece async for piece in source(request)]

    return asyncio.run(main())


def run_until_error(source: DemoSource, prompt: str) -> tuple[list[str], BaseException]:
    async def main() -> tuple[list[str], BaseException]:
        got: list[str] = []
        try:
            async for piece in aiter_source(source, GenerationRequest(prompt, "s")):
                got.append(piece)
        except DemoSourceError as e:
            return got, e
        raise AssertionError("no error raised")

    return asyncio.run(main())


# --- echo ------------------------------------------------------------------------------------

ECHO_TEXTS = [
    "hello world",
    "",
    "x",
    "Ünïcödé ✓ 日本語のテキスト。 emoji 🎉 and\nnewlines\r\n\ttabs  double  spaces ",
    "echo:nested fail-after:2: prefixes stay verbatim",
    "a" * 1000,
]


@pytest.mark.parametrize("text", ECHO_TEXTS)
def test_echo_is_verbatim_in_pieces_of_1_to_4(text: str) -> None:
    pieces = run(FAST, "echo:" + text)
    assert "".join(pieces) == text
    assert all(1 <= len(piece) <= 4 for piece in pieces)


def test_echo_pieces_vary_and_are_deterministic() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 10
    pieces = echo_pieces(text)
    assert {len(p) for p in pieces} == {1, 2, 3, 4}
    assert echo_pieces(text) == pieces
    assert run(FAST, "echo:" + text) == pieces


# --- fail-after ------------------------------------------------------------------------------


def test_fail_after_fewer_than_the_pieces() -> None:
    text = "a long enough text to have more than three pieces"
    got, error = run_until_error(FAST, "fail-after:3:" + text)
    assert got == echo_pieces(text)[:3]  # exactly as echo: would stream it
    assert str(error) == "demo source failed after 3 pieces (fail-after)"
    assert isinstance(error, RuntimeError)


def test_fail_after_more_than_the_pieces() -> None:
    got, error = run_until_error(FAST, "fail-after:1000:short text")
    assert "".join(got) == "short text"
    assert f"failed after {len(got)} pieces" in str(error)


def test_fail_after_zero_fails_at_once() -> None:
    got, error = run_until_error(FAST, "fail-after:0:anything")
    assert got == []
    assert "failed after 0 pieces" in str(error)


def test_fail_after_empty_text() -> None:
    got, error = run_until_error(FAST, "fail-after:5:")
    assert got == []
    assert "failed after 0 pieces" in str(error)


def test_malformed_fail_after_is_an_ordinary_prompt() -> None:
    script = demo_script("fail-after:x:hello", 20)
    assert script.fail_after is None
    assert len(script.pieces) == 20


# --- pause-after -----------------------------------------------------------------------------


def timed(source: DemoSource, prompt: str) -> list[tuple[str, float]]:
    """The pieces, each with when it came (seconds since the start)."""

    async def main() -> list[tuple[str, float]]:
        start = time.monotonic()
        return [
            (piece, time.monotonic() - start)
            async for piece in source(GenerationRequest(prompt, "s"))
        ]

    return asyncio.run(main())


def test_pause_after_streams_as_echo_with_a_silence_after_n_pieces() -> None:
    text = "Let me think about that. Done thinking now."
    got = timed(DemoSource(tokens_per_second=200), "pause-after:5:0.6:" + text)
    assert [piece for piece, _ in got] == echo_pieces(text)  # exactly as echo: would
    gaps = [b - a for (_, a), (_, b) in pairwise(got)]
    assert gaps[4] >= 0.6  # between piece 5 and piece 6
    assert max(gaps[:4] + gaps[5:]) < 0.3  # the usual pace elsewhere
    assert got[-1][1] < 0.6 + len(got) / 200 + 0.5  # the pause did not add up with the pace


def test_pause_after_more_than_the_pieces_is_silent_before_the_end() -> None:
    started = time.monotonic()
    assert "".join(run(FAST, "pause-after:100:0.3:short")) == "short"
    assert time.monotonic() - started >= 0.3


def test_pause_after_accepts_fractions_and_zero() -> None:
    script = demo_script("pause-after:2:1.5:abc", 20)
    assert (script.pause_after, script.pause_seconds) == (2, 1.5)
    assert "".join(script.pieces) == "abc"
    assert "".join(run(FAST, "pause-after:0:0:abc")) == "abc"


def test_malformed_pause_after_is_an_ordinary_prompt() -> None:
    for prompt in ("pause-after:x:1:hello", "pause-after:1:-1:hello", "pause-after:1:1hello"):
        script = demo_script(prompt, 20)
        assert script.pause_after is None
        assert len(script.pieces) == 20


# --- the generated reply ---------------------------------------------------------------------


def test_reply_is_deterministic_and_seeded_by_the_prompt() -> None:
    a = run(FAST, "Tell me about DynamoDB Streams")
    assert a == run(FAST, "Tell me about DynamoDB Streams")
    assert a == demo_reply_tokens("Tell me about DynamoDB Streams", 300)
    assert "".join(a) != "".join(run(FAST, "Tell me about WebSockets"))


def test_reply_has_exactly_the_configured_tokens() -> None:
    for tokens in [*range(0, 60), 299, 300, 301, 2000]:
        assert len(demo_reply_tokens(f"prompt {tokens}", tokens)) == tokens
    assert len(run(DemoSource(reply_tokens=17, tokens_per_second=0), "hi")) == 17


def test_reply_2000_is_about_8_kb_of_prose() -> None:
    tokens = demo_reply_tokens("reply-2000", 2000)
    text = "".join(tokens)
    size = len(text.encode())
    assert 3 <= size / len(tokens) <= 6, size
    assert 6_000 <= size <= 12_000

    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    assert len(paragraphs) >= 10
    assert re.search(r"^- \S", text, re.MULTILINE), "a bulleted list"
    assert text[-1] in ".!?"
    assert text == text.strip()

    prose = [p for p in paragraphs if not p.startswith("- ") and not p.endswith(":")]
    sentences = [s for p in prose for s in re.split(r"(?<=[.!?]) ", p)]
    assert all(s[0].isupper() and s[-1] in ".!?" for s in sentences), sentences
    words = [len(s.split()) for s in sentences[:-1]]  # the last one is cut to fit
    assert min(words) >= 5 and max(words) <= 30
    assert max(words) - min(words) >= 10, "sentence lengths vary"
    assert len(set(text.lower().split())) >= 250, "a moderate vocabulary"
    assert {"?", "!"} & set(text)


def test_tokens_look_like_llm_tokens() -> None:
    tokens = demo_reply_tokens("tokens", 2000)
    assert all(tokens), "no empty tokens"
    assert all(len(t.encode()) <= 12 for t in tokens)
    assert sum(t.endswith(" ") for t in tokens) > len(tokens) / 2


def test_negative_tokens_rejected() -> None:
    with pytest.raises(ValueError):
        demo_reply_tokens("x", -1)
    with pytest.raises(ValueError):
        DemoSource(reply_tokens=-1)


# --- configuration and pacing ----------------------------------------------------------------


def test_from_env() -> None:
    source = DemoSource.from_env(
        {"PTS_DEMO_REPLY_TOKENS": "2000", "PTS_DEMO_TOKENS_PER_SECOND": "12.5"}
    )
    assert (source.reply_tokens, source.tokens_per_second) == (2000, 12.5)
    default = DemoSource.from_env({"PTS_DEMO_REPLY_TOKENS": ""})
    assert (default.reply_tokens, default.tokens_per_second) == (300, 50.0)
    with pytest.raises(ValueError, match="PTS_DEMO_REPLY_TOKENS"):
        DemoSource.from_env({"PTS_DEMO_REPLY_TOKENS": "many"})


def test_pacing_at_50_tokens_per_second() -> None:
    source = DemoSource(reply_tokens=10, tokens_per_second=50)
    start = time.perf_counter()
    assert len(run(source, "pace me")) == 10
    assert time.perf_counter() - start >= 0.15  # 9 gaps of 20 ms


def test_pacing_applies_to_echo_pieces() -> None:
    source = DemoSource(tokens_per_second=100)
    text = "0123456789" * 3
    pieces = echo_pieces(text)
    start = time.perf_counter()
    assert "".join(run(source, "echo:" + text)) == text
    assert time.perf_counter() - start >= (len(pieces) - 1) / 100 * 0.8


def test_rate_zero_is_unpaced_but_cancellable() -> None:
    async def main() -> None:
        source = DemoSource(reply_tokens=20_000, tokens_per_second=0)
        seen = 0

        async def consume() -> None:
            nonlocal seen
            async for _ in source(GenerationRequest("big", "s")):
                seen += 1

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert 0 < seen < 20_000

    asyncio.run(main())
