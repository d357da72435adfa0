"""An ended session's address shows a page in the user's language that says when and why it ended, never JSON."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

SLEEP = {"kind": "command", "command": "sleep", "args": "600", "ncores": "0.1", "memory": "0.0625", "gpus": "0",
         "hours": "1", "image": "default"}

ENDED = {
    "en": ("This session ended at", "because the program finished successfully.", "Start it again",
           "Back to my sessions", ">completed<"),
    "zh-CN": ("此会话已于", "原因：程序已成功完成。", "再次启动", "返回我的会话", ">已完成<"),
}


def launch(client: httpx.Client, **fields: str) -> httpx.Response:
    """Start a `sleep` session through the launch form, with some fields changed."""
    form = client.get("/sessions/new").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    return client.post("/sessions", data={**SLEEP, **fields, "csrf_token": csrf})


@pytest.mark.parametrize("language", ENDED)
def test_an_ended_sessions_address_shows_when_and_why_it_ended(hub: Any, browser: Any, new_user: Any,
                                                               language: str) -> None:
    client = browser(new_user(), language=language)
    answer = launch(client, args="1")
    session_id = answer.headers["location"].rsplit("/", 1)[1]
    hub.wait_for_state(session_id, {"completed", "failed", "stopped"}, timeout=15)
    sent = client.get(f"/s/{session_id}/lab")
    assert sent.status_code == 303 and sent.headers["location"] == f"/sessions/{session_id}"
    page = client.get(sent.headers["location"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for words in ENDED[language]:
        assert words in page.text, words
    assert re.search(r"\d{1,2}:\d{2}", page.text.split("data-ended")[1])


def test_a_running_sessions_page_says_when_it_ends_in_local_time(hub: Any, browser: Any, new_user: Any) -> None:
    client = browser(new_user())
    session_id = launch(client, hours="1").headers["location"].rsplit("/", 1)[1]
    hub.wait_for_state(session_id, {"running"})
    page = client.get(f"/sessions/{session_id}").text
    assert re.search(r"at \d{2}:\d{2}, in <span data-minutes-until=\"[^\"]+\">(59 min|1 h 0 min)</span>", page), page


def test_a_sessions_page_shows_what_its_program_printed(hub: Any, browser: Any, new_user: Any) -> None:
    client = browser(new_user())
    session_id = launch(client, command="echo", args="hello from the log").headers["location"].rsplit("/", 1)[1]
    hub.wait_for_state(session_id, {"completed", "failed", "stopped"}, timeout=15)
    page = client.get(f"/sessions/{session_id}").text
    assert re.search(r"<pre class=\"log\" data-log>hello from the log\n</pre>", page), page
