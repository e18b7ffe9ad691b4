"""The source interface: `load_source` and `aiter_source` (sync and async sources alike)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from pts.sources import BUILTIN_SOURCES, GenerationRequest, Source, aiter_source, load_source
from pts.sources.bedrock import BedrockSource
from pts.sources.demo import DemoSource
from pts.sources.openai import OpenAISource

REQUEST = GenerationRequest(prompt="echo:hi", stream_id="s1", chat_id="c1")


async def _collect(source: Source, request: GenerationRequest = REQUEST) -> list[str]:
    return [piece async for piece in aiter_source(source, request)]


# --- load_source ---------------------------------------------------------------------------


def test_load_demo_from_env() -> None:
    source = load_source("demo", {"PTS_DEMO_REPLY_TOKENS": "42", "PTS_DEMO_TOKENS_PER_SECOND": "0"})
    assert isinstance(source, DemoSource)
    assert (source.reply_tokens, source.tokens_per_second) == (42, 0.0)


def test_load_demo_defaults_and_name_is_forgiving() -> None:
    source = load_source(" Demo ", {})
    assert isinstance(source, DemoSource)
    assert (source.reply_tokens, source.tokens_per_second) == (300, 50.0)


def test_load_bedrock_is_lazy() -> None:
    env = {"PTS_BEDROCK_MODEL_ID": "amazon.nova-micro-v1:0", "PTS_BEDROCK_MAX_TOKENS": "77"}
    source = load_source("bedrock", env)
    assert isinstance(source, BedrockSource)
    assert (source.model_id, source.max_tokens) == ("amazon.nova-micro-v1:0", 77)
    assert source._client is None  # no boto3 client until the first reply


def test_load_openai() -> None:
    env = {
        "PTS_OPENAI_BASE_URL": "http://127.0.0.1:9/v1/",
        "PTS_OPENAI_API_KEY": "sk-test",
        "PTS_OPENAI_MODEL": "llama3",
    }
    source = load_source("openai", env)
    assert isinstance(source, OpenAISource)
    assert source.url == "http://127.0.0.1:9/v1/chat/completions"
    assert source.model == "llama3"
    assert "sk-test" not in repr(source)


def test_builtin_names() -> None:
    assert set(BUILTIN_SOURCES) == {"demo", "bedrock", "openai"}


def test_load_module_attr_calls_the_factory_with_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_sources_mod.py").write_text(
        "def shout_factory(env):\n"
        "    suffix = env.get('SUFFIX', '')\n"
        "    async def shout(request):\n"
        "        for word in request.prompt.split():\n"
        "            yield word.upper() + suffix\n"
        "    return shout\n"
        "\n"
        "class Repeat:\n"
        "    def __init__(self, env):\n"
        "        self.times = int(env['TIMES'])\n"
        "    def __call__(self, request):\n"
        "        return [request.prompt] * self.times\n"
        "\n"
        "not_a_factory = 3\n"
        "def bad_factory(env):\n"
        "    return 'nope'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    shout = load_source("my_sources_mod:shout_factory", {"SUFFIX": "!"})
    assert asyncio.run(_collect(shout, GenerationRequest("a b", "s"))) == ["A!", "B!"]

    repeat = load_source("my_sources_mod:Repeat", {"TIMES": "3"})
    assert asyncio.run(_collect(repeat, GenerationRequest("x", "s"))) == ["x", "x", "x"]

    with pytest.raises(TypeError, match="not callable"):
        load_source("my_sources_mod:not_a_factory", {})
    with pytest.raises(TypeError, match="returned str"):
        load_source("my_sources_mod:bad_factory", {})
    with pytest.raises(ValueError, match="no attribute 'missing'"):
        load_source("my_sources_mod:missing", {})


def test_load_module_attr_dotted_path() -> None:
    source = load_source("pts.sources.demo:DemoSource.from_env", {"PTS_DEMO_REPLY_TOKENS": "5"})
    assert isinstance(source, DemoSource)
    assert source.reply_tokens == 5


@pytest.mark.parametrize("name", ["gpt", "", "demo2", "pts.sources.demo", ":x", "x:"])
def test_unknown_name_lists_the_choices(name: str) -> None:
    with pytest.raises(ValueError) as info:
        load_source(name, {})
    message = str(info.value)
    for choice in ("'demo'", "'bedrock'", "'openai'", "package.module:factory"):
        assert choice in message


def test_missing_module() -> None:
    with pytest.raises(ValueError, match="no module named 'no_such_module_xyz'"):
        load_source("no_such_module_xyz:make", {})


# --- aiter_source ----------------------------------------------------------------------------


def test_sync_list_and_generator_and_async_sources() -> None:
    def from_list(request: GenerationRequest) -> list[str]:
        return ["a", "b"]

    def from_generator(request: GenerationRequest) -> Iterator[str]:
        yield "c"
        yield "d"

    async def from_async(request: GenerationRequest) -> AsyncIterator[str]:
        yield "e"
        await asyncio.sleep(0)
        yield "f"

    assert asyncio.run(_collect(from_list)) == ["a", "b"]
    assert asyncio.run(_collect(from_generator)) == ["c", "d"]
    assert asyncio.run(_collect(from_async)) == ["e", "f"]


def test_sync_source_does_not_block_the_loop() -> None:
    def slow(request: GenerationRequest) -> Iterator[str]:
        time.sleep(0.2)  # a blocking SDK call
        yield "done"

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        assert await _collect(slow) == ["done"]
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 5


def test_errors_propagate_after_the_pieces() -> None:
    def failing(request: GenerationRequest) -> Iterator[str]:
        yield "a"
        raise RuntimeError("boom")

    async def main() -> list[str]:
        got: list[str] = []
        with pytest.raises(RuntimeError, match="boom"):
            async for piece in aiter_source(failing, REQUEST):
                got.append(piece)
        return got

    assert asyncio.run(main()) == ["a"]


def test_non_str_piece_is_a_type_error() -> None:
    def numbers(request: GenerationRequest) -> Iterator[object]:
        yield 1

    with pytest.raises(TypeError, match="str pieces, got int"):
        asyncio.run(_collect(numbers))  # type: ignore[arg-type]


def test_stopping_early_closes_a_sync_generator() -> None:
    closed = threading.Event()

    def endless(request: GenerationRequest) -> Iterator[str]:
        try:
            while True:
                yield "x"
        finally:
            closed.set()

    async def main() -> None:
        pieces = aiter_source(endless, REQUEST)
        assert await anext(pieces) == "x"
        await pieces.aclose()

    asyncio.run(main())
    assert closed.wait(2)


def test_cancelling_during_a_blocking_step_closes_the_generator_afterwards() -> None:
    release, closed = threading.Event(), threading.Event()

    def blocking(request: GenerationRequest) -> Iterator[str]:
        try:
            yield "first"
            release.wait(5)  # stuck in the SDK when the cancel arrives
            yield "second"
        finally:
            closed.set()

    async def main() -> None:
        async def consume() -> None:
            async for _ in aiter_source(blocking, REQUEST):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not closed.is_set()  # cannot close a generator that is running...
        release.set()

    asyncio.run(main())
    assert closed.wait(2)  # ...so it is closed as soon as its step returns


def test_stopping_early_closes_an_async_generator() -> None:
    async def main() -> bool:
        done = asyncio.Event()

        async def endless(request: GenerationRequest) -> AsyncIterator[str]:
            try:
                while True:
                    yield "x"
                    await asyncio.sleep(0)
            finally:
                done.set()

        async with aclosing(aiter_source(endless, REQUEST)) as pieces:
            async for _ in pieces:
                break
        return done.is_set()

    assert asyncio.run(main())
