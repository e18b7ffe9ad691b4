"""`pts.batching.Batcher`: where streamed text is cut into persisted batches (docs/protocol.md)."""

from __future__ import annotations

import itertools
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pts.batching import Batcher

PUNCT = ".!?\u2026"  # . ! ? …
MARKS = "\n\u3002\uff01\uff1f"  # newline 。 ！ ？


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def boundary_ends(text: str) -> list[int]:
    """Reference rule, written independently of the module: every index a cut may follow."""
    ends = []
    for i, ch in enumerate(text):
        if ch in MARKS:
            ends.append(i + 1)
        elif ch in PUNCT and i + 1 < len(text) and text[i + 1].isspace():
            ends.append(i + 2)
    return ends


def ends_at_boundary(batch: str) -> bool:
    return bool(batch) and (
        batch[-1] in MARKS or (len(batch) >= 2 and batch[-2] in PUNCT and batch[-1].isspace())
    )


# Text that hits every rule often: punctuation, whitespace of several kinds, CJK marks,
# accents (1-2 bytes), CJK (3 bytes), emoji (4 bytes, and a ZWJ sequence).
ALPHABET = "ab xyz.!?\u2026\n\t\r\u3002\uff01\uff1f\u00a0\u3000éü你好😀"
WORDS = [*ALPHABET, "👩\u200d💻", "Hello", " world", "3.14", "e.g.", "...", "?! "]
texts = st.one_of(
    st.text(),
    st.text(alphabet=ALPHABET),
    st.lists(st.sampled_from(WORDS)).map("".join),
)


@st.composite
def split_text(draw: st.DrawFn, text: str) -> list[str]:
    """`text` cut into pieces at arbitrary points, empty pieces included."""
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=40)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def streams(draw: st.DrawFn) -> tuple[str, list[tuple[str, float, bool]]]:
    """A text and how it arrives: (piece, now, call due() after it), `now` non-decreasing."""
    text = draw(texts)
    pieces = draw(split_text(text))
    steps = draw(
        st.lists(
            st.tuples(st.floats(0, 1.5, allow_nan=False), st.booleans()),
            min_size=len(pieces),
            max_size=len(pieces),
        )
    )
    now, events = 100.0, []
    for piece, (gap, call_due) in zip(pieces, steps, strict=True):
        now += gap
        events.append((piece, now, call_due))
    return text, events


def check_batches(batches: list[str], max_bytes: int) -> None:
    for batch in batches:
        assert batch, "empty batch"
        assert nbytes(batch) <= max_bytes
        assert batch.encode("utf-8").decode("utf-8") == batch


@settings(max_examples=300, deadline=None)
@given(
    stream=streams(),
    max_bytes=st.one_of(st.integers(4, 64), st.just(4096)),
    max_delay=st.sampled_from([0.0, 0.3, 1.0, math.inf]),
    min_interval=st.sampled_from([0.0, 0.25, 0.5, 2.0]),
)
def test_batches_rejoin_to_the_input_exactly(
    stream: tuple[str, list[tuple[str, float, bool]]],
    max_bytes: int,
    max_delay: float,
    min_interval: float,
) -> None:
    text, events = stream
    b = Batcher(max_delay=max_delay, max_bytes=max_bytes, min_interval=min_interval)
    out: list[str] = []
    for piece, now, call_due in events:
        got = b.add(piece, now)
        if call_due:
            got += b.due(now)
        check_batches(got, max_bytes)
        out += got
        # Invariants between calls: the buffer is what is not yet out, within max_bytes,
        # and not overdue at `now` (add applies the max_delay rule itself).
        assert "".join(out) + b.pending == text[: len("".join(out)) + len(b.pending)]
        assert nbytes(b.pending) <= max_bytes
        deadline = b.deadline()
        assert (deadline is None) == (b.pending == "")
        assert deadline is None or deadline > now
    final = b.flush()
    check_batches(final, max_bytes)
    assert "".join(out + final) == text
    assert b.pending == "" and b.deadline() is None and b.flush() == []


@settings(max_examples=300, deadline=None)
@given(stream=streams())
def test_without_delay_or_size_pressure_batches_end_at_the_last_boundary(
    stream: tuple[str, list[tuple[str, float, bool]]],
) -> None:
    text, events = stream
    b = Batcher(max_delay=math.inf, max_bytes=10**9, min_interval=0)
    out: list[str] = []
    for piece, now, call_due in events:
        got = b.add(piece, now)
        if call_due:
            assert b.due(now) == []
        for batch in got:
            assert ends_at_boundary(batch), batch
        assert len(got) <= 1  # everything up to the last boundary goes as one batch
        out += got
        # Maximal: nothing that is already a complete boundary stays buffered.
        assert boundary_ends(b.pending) == []
    final = b.flush()
    assert "".join(out + final) == text
    done = "".join(out)
    assert done == text[: max([0, *boundary_ends(text)])]


@settings(max_examples=300, deadline=None)
@given(
    stream=streams(),
    max_bytes=st.one_of(st.integers(4, 64), st.just(4096)),
    max_delay=st.sampled_from([0.0, 0.3, 1.0, 3.0]),
    min_interval=st.sampled_from([0.0, 0.25, 0.5, 2.0]),
)
def test_batches_keep_min_interval_apart_and_no_character_waits_too_long(
    stream: tuple[str, list[tuple[str, float, bool]]],
    max_bytes: int,
    max_delay: float,
    min_interval: float,
) -> None:
    """A caller that sleeps to `deadline()` between pieces, as the driver does."""
    text, events = stream
    b = Batcher(max_delay=max_delay, max_bytes=max_bytes, min_interval=min_interval)
    arrivals: list[tuple[int, float]] = []  # (offset just past a piece, when it arrived)
    written = 0
    last: float | None = None

    def took(got: list[str], now: float, by_size: bool) -> None:
        nonlocal written, last
        if got:
            if last is not None and not by_size:
                assert now - last >= min_interval - 1e-9, (now, last)
            last = now
            written += len("".join(got))

    def oldest() -> float:
        return next(t for end, t in arrivals if end > written)

    for piece, now, _ in events:
        while (deadline := b.deadline()) is not None and deadline <= now:
            took(b.due(deadline), deadline, by_size=False)
        over = nbytes(b.pending + piece) > max_bytes
        arrivals.append(((arrivals[-1][0] if arrivals else 0) + len(piece), now))
        took(b.add(piece, now), now, by_size=over)
        if b.pending:
            # Nothing waits longer than max_delay plus one interval between writes.
            deadline = b.deadline()
            assert deadline is not None
            assert deadline - oldest() <= max_delay + min_interval + 1e-9
            assert now - oldest() <= max_delay + min_interval + 1e-9
    assert written + len(b.pending) == len(text)


def test_boundaries_wait_for_min_interval_after_the_previous_batch() -> None:
    b = Batcher(min_interval=0.5, max_delay=1.0)
    assert b.add("One. ", 0.0) == ["One. "]  # the first sentence goes at once
    assert b.add("Two. Thr", 0.2) == []
    assert b.deadline() == 0.5
    assert b.due(0.49) == []
    assert b.due(0.5) == ["Two. "]
    assert b.pending == "Thr"
    assert b.deadline() == pytest.approx(1.2)  # "Thr" arrived at 0.2
    assert b.add("ee. Four", 0.9) == []  # a boundary, but only 0.4 s after "Two. "
    assert b.deadline() == 1.0
    assert b.add(" five", 1.0) == ["Three. "]
    assert b.pending == "Four five"


def test_max_delay_also_waits_for_min_interval() -> None:
    b = Batcher(min_interval=1.0, max_delay=0.3)
    assert b.add("Go. no", 0.0) == ["Go. "]
    assert b.deadline() == 1.0  # "no" is due at 0.3, but the previous batch was at 0.0
    assert b.due(0.5) == []
    assert b.due(1.0) == ["no"]


def test_max_bytes_does_not_wait_for_min_interval() -> None:
    b = Batcher(min_interval=5.0, max_delay=10.0, max_bytes=8)
    assert b.add("Hi. ", 0.0) == ["Hi. "]
    assert b.add("Yo. abcdef", 0.1) == ["Yo. "]  # 10 bytes > 8: cut now, at the boundary
    assert b.pending == "abcdef"


# --- examples -------------------------------------------------------------------------


def test_cuts_after_the_last_sentence_and_keeps_the_rest() -> None:
    b = Batcher(min_interval=0)
    assert b.add("Hello world. How are you? Fine", 0.0) == ["Hello world. How are you? "]
    assert b.pending == "Fine"
    assert b.flush() == ["Fine"]
    assert b.flush() == []


def test_a_dot_without_whitespace_is_not_a_boundary() -> None:
    b = Batcher(min_interval=0)
    assert b.add("3.14 is pi", 0.0) == []
    assert b.add(", e.g.x", 0.1) == []
    assert b.pending == "3.14 is pi, e.g.x"


def test_punctuation_at_the_end_waits_for_the_next_piece() -> None:
    b = Batcher(min_interval=0)
    assert b.add("It costs 3.", 0.0) == []
    assert b.add("50 today! Yes", 0.1) == ["It costs 3.50 today! "]
    assert b.add("!", 0.2) == []
    assert b.add(" ", 0.3) == ["Yes! "]
    assert b.pending == ""


def test_the_cut_is_after_the_first_whitespace_character() -> None:
    b = Batcher(min_interval=0)
    assert b.add("One.   Two", 0.0) == ["One. "]
    assert b.pending == "  Two"
    assert b.add(".\tThree", 0.1) == ["  Two.\t"]
    assert b.pending == "Three"


def test_cjk_marks_are_boundaries_on_their_own() -> None:
    b = Batcher(min_interval=0)
    out = [b.add(ch, 0.0) for ch in "你好。世界！再见？好"]
    assert [batch for got in out for batch in got] == ["你好。", "世界！", "再见？"]
    assert b.pending == "好"
    # Several at once flush together, up to the last one.
    assert Batcher(min_interval=0).add("你好。世界！再", 0.0) == ["你好。世界！"]


def test_ellipsis_followed_by_space() -> None:
    b = Batcher(min_interval=0)
    assert b.add("Well\u2026", 0.0) == []
    assert b.add(" maybe", 0.1) == ["Well\u2026 "]
    assert b.add("\u2026no", 0.2) == []


def test_newlines_are_boundaries() -> None:
    b = Batcher(min_interval=0)
    assert b.add("- one\n- two", 0.0) == ["- one\n"]
    assert b.add("\n", 0.1) == ["- two\n"]
    assert b.add("Done.\n\nNext", 0.2) == ["Done.\n\n"]
    assert b.pending == "Next"


def test_text_without_punctuation_flushes_on_due_after_max_delay() -> None:
    b = Batcher(min_interval=0, max_delay=1.0)
    code = ["def f(x):", " return", " x", " *", " 2"]
    for i, piece in enumerate(code):
        assert b.add(piece, 10.0 + 0.1 * i) == []
    assert b.deadline() == 11.0
    assert b.due(10.99) == []
    assert b.due(11.0) == ["".join(code)]
    assert b.deadline() is None
    assert b.due(20.0) == []


def test_add_also_flushes_the_whole_buffer_once_overdue() -> None:
    b = Batcher(min_interval=0, max_delay=1.0)
    assert b.add("no punctuation", 0.0) == []
    assert b.add(" here", 1.5) == ["no punctuation here"]
    assert b.pending == ""


def test_deadline_follows_the_oldest_buffered_character() -> None:
    b = Batcher(min_interval=0, max_delay=1.0)
    assert b.deadline() is None
    b.add("", 5.0)
    assert b.deadline() is None
    b.add("Hi", 5.0)
    assert b.deadline() == 6.0
    b.add(" there", 5.5)
    assert b.deadline() == 6.0  # the oldest character did not get younger
    assert b.add(". And", 5.7) == ["Hi there. "]
    assert b.deadline() == pytest.approx(6.7)  # "And" arrived at 5.7
    b.flush()
    assert b.deadline() is None


def test_deadline_after_a_max_bytes_cut_is_that_of_the_kept_tail() -> None:
    b = Batcher(min_interval=0, max_delay=1.0, max_bytes=6)
    assert b.add("aaaa", 0.0) == []
    assert b.add("bbbb", 0.5) == ["aaaabb"]
    assert b.pending == "bb"
    assert b.deadline() == 1.5


def test_max_bytes_never_splits_a_four_byte_emoji() -> None:
    b = Batcher(min_interval=0, max_bytes=6)
    assert b.add("😀" * 5, 0.0) == ["😀"] * 4
    assert b.pending == "😀"
    assert b.flush() == ["😀"]
    b = Batcher(min_interval=0, max_bytes=9)
    got = b.add("a" + "😀" * 4, 0.0) + b.flush()
    assert "".join(got) == "a" + "😀" * 4
    assert all(nbytes(x) <= 9 for x in got)
    assert got[0] == "a😀😀"


def test_max_bytes_prefers_a_boundary_then_whitespace() -> None:
    b = Batcher(min_interval=0, max_delay=math.inf, max_bytes=16)
    assert b.add("aaaaaaaaaa bbbbbbbbbb", 0.0) == ["aaaaaaaaaa "]
    assert b.pending == "bbbbbbbbbb"
    # One huge piece with sentences: each chunk ends after a sentence where one fits.
    got = Batcher(min_interval=0, max_bytes=16).add("First one. Then two. Three", 0.0)
    assert got == ["First one. ", "Then two. "]


def test_lone_surrogates_do_not_crash() -> None:
    b = Batcher(min_interval=0, max_bytes=4)
    text = "a\ud800b. \udfff\ud83d\ude00"
    got = b.add(text, 0.0) + b.flush()
    assert "".join(got) == text
    assert all(len(x.encode("utf-8", "surrogatepass")) <= 4 for x in got)


def test_rejects_unusable_settings() -> None:
    with pytest.raises(ValueError):
        Batcher(min_interval=0, max_bytes=3)
    with pytest.raises(ValueError):
        Batcher(min_interval=0, max_delay=-1.0)
    with pytest.raises(ValueError):
        Batcher(min_interval=0, max_delay=math.nan)
    with pytest.raises(ValueError):
        Batcher(min_interval=-0.1)
    with pytest.raises(ValueError):
        Batcher(min_interval=math.inf)


@pytest.mark.parametrize("sentences", [True, False])
def test_large_replies_stay_linear(sentences: bool) -> None:
    # ~100 KB in 2-5 character tokens; quadratic rescans would take seconds, not ms.
    word = "lorem ipsum dolor. " if sentences else "lorem ipsum dolor "
    text = word * (100_000 // len(word))
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    for max_bytes in (4096, 10**9):
        b = Batcher(min_interval=0, max_delay=math.inf, max_bytes=max_bytes)
        start = time.perf_counter()
        out = [batch for i, p in enumerate(pieces) for batch in b.add(p, i * 1e-3)]
        out += b.flush()
        elapsed = time.perf_counter() - start
        assert "".join(out) == text
        assert elapsed < 1.0, elapsed


def test_coalesce_joins_queued_batches_within_max_bytes():
    from pts.batching import coalesce

    assert coalesce(["One. ", "Two. ", "Three. "], 4096) == ["One. Two. Three. "]
    assert coalesce(["aaaa", "bbbb", "cc"], 8) == ["aaaabbbb", "cc"]
    assert coalesce(["é" * 3, "é"], 7) == ["ééé", "é"]  # 6 + 2 bytes > 7
    assert coalesce([], 10) == []
