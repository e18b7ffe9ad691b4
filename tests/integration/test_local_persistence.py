"""`make dev`'s data survives a restart: the tables are saved in a data dir at stop (and
while running) and loaded at start; a reset starts empty; stacks without one keep nothing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx

from pts.local.dynamodb import DATA_FILE, reset_data
from pts.storage import StreamStore
from tests.support import running_stack


def _chat(http: httpx.Client, prompt: str) -> tuple[str, str]:
    created = http.post("/chats", json={"prompt": prompt})
    assert created.status_code == 201, created.text
    chat = created.json()
    auth = {"Authorization": f"Bearer {chat['driveToken']}"}
    driven = http.post("/chat-stream", json={"streamId": chat["streamId"]}, headers=auth)
    assert driven.status_code == 200
    return chat["chatId"], chat["streamId"]


def test_the_tables_survive_a_restart_and_a_reset_empties_them(tmp_path: Path):
    data_dir = tmp_path / ".pts-local"
    with (
        running_stack(data_dir=data_dir) as running,
        httpx.Client(base_url=running.http_url) as http,
    ):
        chat_id, stream_id = _chat(http, "echo:kept across restarts")
        before = http.get(f"/streams/{stream_id}").json()
    assert before["status"] == "done" and before["text"] == "kept across restarts"
    assert json.loads((data_dir / DATA_FILE).read_text())["tables"]["StreamsTable"]

    with (
        running_stack(data_dir=data_dir) as running,
        httpx.Client(base_url=running.http_url) as http,
    ):
        assert http.get(f"/streams/{stream_id}").json() == before
        assert chat_id in [c["chatId"] for c in http.get("/chats").json()["chats"]]
        _, second = _chat(http, "echo:and a second one")

    reset_data(data_dir)
    with (
        running_stack(data_dir=data_dir) as running,
        httpx.Client(base_url=running.http_url) as http,
    ):
        assert http.get(f"/streams/{stream_id}").status_code == 404
        assert http.get(f"/streams/{second}").status_code == 404
        assert http.get("/chats").json()["chats"] == []


def test_a_stack_without_a_data_dir_keeps_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with running_stack() as running, httpx.Client(base_url=running.http_url) as http:
        _, stream_id = _chat(http, "echo:gone with the stack")
    with running_stack() as running, httpx.Client(base_url=running.http_url) as http:
        assert http.get(f"/streams/{stream_id}").status_code == 404
    assert list(tmp_path.iterdir()) == []


def test_a_stream_left_streaming_by_a_crash_is_ended_by_the_sweeper(tmp_path: Path):
    """Its driver died with the stack (a claimed stream, no driver): after the restart the
    sweeper times it out, as on AWS when the function's instance is gone."""
    with (
        running_stack(data_dir=tmp_path) as running,
        httpx.Client(base_url=running.http_url) as http,
    ):
        stream_id = http.post("/chats", json={"prompt": "echo:never driven"}).json()["streamId"]
        assert StreamStore(os.environ["PTS_TABLE"]).claim(stream_id)
        assert http.get(f"/streams/{stream_id}").json()["status"] == "streaming"

    knobs = {"PTS_IDLE_TIMEOUT_SECONDS": "1"}
    with (
        running_stack(knobs, data_dir=tmp_path) as running,
        httpx.Client(base_url=running.http_url) as http,
    ):
        deadline = time.monotonic() + 20
        while (status := http.get(f"/streams/{stream_id}").json()["status"]) == "streaming":
            assert time.monotonic() < deadline, "never swept"
            time.sleep(0.2)
        assert status == "timeout"
