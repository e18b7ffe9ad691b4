"""Two thousand viewers of one stream on the local stack: the fan-out hands slices of them to
parallel asynchronous invocations of its worker (`pts.fanout_workers`), and every viewer
ends with exactly the text the driver streamed."""

from __future__ import annotations

import httpx
import pytest

from bench.clients import Drive, LoadProcess, Watch
from pts.local.functions import Invocation
from tests.support import running_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

VIEWERS = 2000


def test_two_thousand_viewers_each_get_the_exact_text() -> None:
    environment = {
        "PTS_FANOUT_VIEWERS_PER_INVOCATION": "250",
        "PTS_BATCH_MIN_INTERVAL_SECONDS": "0.5",
        "PTS_DEMO_REPLY_TOKENS": "300",
        "PTS_DEMO_TOKENS_PER_SECOND": "100",
    }
    with running_stack(environment) as stack:
        workers: list[Invocation] = []
        stack.stack.functions["FanoutWorkerFunction"].observe(workers.append)
        chat = httpx.post(f"{stack.http_url}/chats", json={"prompt": "a big audience"}).json()
        load = LoadProcess()
        try:
            result = load.run(
                [Drive(stack.http_url, chat["streamId"], chat["driveToken"])],
                [Watch(stack.ws_url, (chat["streamId"],), VIEWERS)],
                timeout=600,
            )
        finally:
            load.close()
        (drive,) = result.drives
        assert drive.status == 200 and drive.text
        stored = httpx.get(f"{stack.http_url}/streams/{chat['streamId']}").json()
        assert stored["text"] == drive.text and stored["status"] == "done"
        assert len(result.viewers) == VIEWERS
        wrong = [v for v in result.viewers if v.text != drive.text or v.status != "done"]
        assert not wrong, f"{len(wrong)} viewer(s) differ, e.g. {wrong[0].text[:80]!r}"
        # Every batch and the status went through the second level: 7 slices beyond the
        # fan-out's own, per invocation of the fan-out.
        assert workers and not [w for w in workers if w.error]
        assert len(workers) % (VIEWERS // 250 - 1) == 0
