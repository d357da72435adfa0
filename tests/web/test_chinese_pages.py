"""No English on a Chinese page a user can reach: every console page of a user and of an administrator, and every
refusal they can provoke from a form (wrong password, a bad SSH key, a launch over the node's limits, another
member's proposal, another user's session, a bad job...), shown with the language cookie set to Chinese, holds no
message of the catalogue in English, and the refusal is the Chinese one."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.catalogue import untranslated
from helpers.data import write
from tests.web.conftest import PASSWORD, csrf_of

ZH = {"beamhub-lang": "zh_CN"}
SLEEP = {"kind": "command", "command": "sleep", "args": "600", "ncores": "0.1", "memory": "0.0625", "gpus": "0",
         "hours": "1", "image": "default"}
DSA_KEY = "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq/xfW6MPbLm1Vs14E7"
ED25519_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl you@laptop"


@pytest.fixture(scope="module")
def hub(module_beamhub_factory: Any, uid_range_env: dict[str, str], storage: Path) -> Any:
    """A node of 4 cores and 8 GiB with its data under `storage`."""
    return module_beamhub_factory(env={**uid_range_env, "BEAMHUB_NODE_CPUS": "4", "BEAMHUB_NODE_MEMORY": "8Gi",
                                       "BEAMHUB_STORAGE_ROOT": str(storage)})


@pytest.fixture(scope="module")
def people(hub: Any, new_user: Callable[[], str]) -> dict[str, str]:
    """A member of a proposal with data, someone else, and an administrator; each signs in with PASSWORD."""
    names = {"member": new_user(), "stranger": new_user(), "admin": new_user()}
    assert hub.admin.patch(f"/api/v1/users/{names['admin']}", json={"roles": ["admin"]}).status_code == 200
    now = datetime.now(UTC)
    created = hub.admin.post("/api/v1/proposals", json={
        "id": f"2025-{secrets.randbelow(10**5):05d}", "title": "Operando battery cycling", "beamline": "b7",
        "beamtime_start": (now - timedelta(days=1)).isoformat(), "beamtime_end": now.isoformat(),
        "members": [{"username": names["member"], "role": "pi"}]})
    assert created.status_code == 201, created.text
    write(Path(created.json()["path"]), "scan1/meta.json", b"{}")
    assert hub.admin.post(f"/api/v1/proposals/{created.json()['id']}/register", json={}).status_code == 200
    return names | {"proposal": created.json()["id"]}


@pytest.fixture
def chinese(hub: Any) -> Iterator[Callable[[str | None], httpx.Client]]:
    """chinese(username): a browser with the language switch set to Chinese, signed in through the login form."""
    clients: list[httpx.Client] = []

    def make(username: str | None) -> httpx.Client:
        client = httpx.Client(base_url=hub.url, headers={"Accept": "text/html"}, cookies=ZH, timeout=30)
        clients.append(client)
        if username is not None:
            answer = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/",
                                                 "csrf_token": csrf_of(client.get("/login"))})
            assert answer.status_code == 303, answer.text
        return client

    yield make
    for client in clients:
        client.close()


def in_chinese(page: httpx.Response, status: int = 200, *said: str) -> str:
    """The page's HTML, after checking it is a Chinese page with no catalogue message left in English."""
    assert page.status_code == status, (page.status_code, page.text[:2000])
    assert page.headers["content-type"].startswith("text/html") and 'lang="zh-CN"' in page.text
    assert not untranslated(page.text), (str(page.url), untranslated(page.text))
    for words in said:
        assert words in page.text, (words, page.text)
    return page.text


def events_in_chinese(page: str) -> None:
    """Every event a session's page lists says it in Chinese (its words are stored in English)."""
    events = re.search(r"<ol class=\"events\" data-events>(.*?)</ol>", page, re.S)
    assert events, page
    for item in re.findall(r"<li>(.*?)</li>", events.group(1), re.S):
        assert re.search(r"[\u4e00-\u9fff]", re.sub(r"<time>.*?</time>", "", item)), item


def post(client: httpx.Client, path: str, form: str = "/", **fields: str) -> httpx.Response:
    """A form's post with the CSRF token of the page at `form`."""
    return client.post(path, data={**fields, "csrf_token": csrf_of(client.get(form))})


def launch(client: httpx.Client, **fields: str) -> httpx.Response:
    return post(client, "/sessions", "/sessions/new", **{**SLEEP, **fields})


def test_every_page_of_a_user_is_chinese(hub: Any, chinese: Any, people: dict[str, str]) -> None:
    client = chinese(people["member"])
    running = launch(client).headers["location"]
    assert "申请0.1个 CPU 核、64Mi 内存、0个 GPU，时长3600秒" in client.get(running).text  # a stored event
    failed = launch(client, command="sh", args="-c 'exit 3'").headers["location"]
    hub.wait_for_state(failed.rsplit("/", 1)[1], {"failed"}, timeout=30)
    hub.wait_for_state(running.rsplit("/", 1)[1], {"running"}, timeout=30)
    proposal = people["proposal"]
    for path in ("/", "/sessions/new", "/sessions/new?kind=command", running, "/data", f"/data/{proposal}",
                 f"/data/{proposal}/files", f"/data/{proposal}/files?prefix=scan1", "/jobs", "/keys",
                 "/keys/tokens/new", "/help"):
        in_chinese(client.get(path))
    events_in_chinese(in_chinese(client.get(failed), 200, "程序出错停止（退出状态3）"))
    events_in_chinese(in_chinese(client.get(running)))
    assert post(client, f"{running}/stop").status_code == 303
    events_in_chinese(in_chinese(client.get(running), 200, "请求停止"))
    in_chinese(client.get("/no/such/page"), 404, "未找到")
    in_chinese(chinese(None).get("/login"))


def test_every_page_of_an_administrator_is_chinese(chinese: Any, people: dict[str, str]) -> None:
    client = chinese(people["admin"])
    for path in ("/admin", "/admin/sessions", "/admin/users", "/admin/groups", "/admin/proposals",
                 "/admin/workstations", "/admin/audit"):
        in_chinese(client.get(path))


def test_a_wrong_password_is_refused_in_chinese(chinese: Any, people: dict[str, str]) -> None:
    client = chinese(None)
    answer = client.post("/login", data={"username": people["stranger"], "password": "not the password",
                                         "next": "/", "csrf_token": csrf_of(client.get("/login"))})
    in_chinese(answer, 401, "用户名或密码错误")


def test_a_bad_ssh_key_is_refused_in_chinese(chinese: Any, people: dict[str, str]) -> None:
    client = chinese(people["stranger"])
    refusals = {DSA_KEY: "不接受 DSA 密钥", "my key": "不是 SSH 公钥",
                f"{ED25519_KEY}\nnot a key at all": "请只提供一个密钥",
                "-----BEGIN OPENSSH PRIVATE KEY-----": "这看起来是私钥或 PEM 文件"}
    for text, words in refusals.items():
        in_chinese(post(client, "/keys/ssh", "/keys", public_key=text), 422, words)


def test_a_launch_the_node_cannot_give_is_refused_in_chinese(chinese: Any, people: dict[str, str]) -> None:
    client = chinese(people["stranger"])
    in_chinese(launch(client, ncores="64"), 409, "空闲资源不足", "请求了64个 CPU 核，但本节点总共只有4个")
    in_chinese(launch(client, hours="1000"), 422, "一个会话最长可运行")
    in_chinese(launch(client, ncores="many"), 422)


def test_another_users_session_and_proposal_are_refused_in_chinese(chinese: Any, people: dict[str, str]) -> None:
    member, stranger = chinese(people["member"]), chinese(people["stranger"])
    session = launch(member).headers["location"]
    in_chinese(post(stranger, f"{session}/stop"), 403, "此会话属于其他用户")
    in_chinese(stranger.get(session), 403, "此会话属于其他用户")
    for path in (f"/data/{people['proposal']}", f"/data/{people['proposal']}/files?prefix=scan1"):
        in_chinese(stranger.get(path), 404, "未找到", f"没有课题 {people['proposal']}")
    in_chinese(member.get(f"/data/{people['proposal']}/files?prefix=../x"), 422, "路径不能包含 &#39;..&#39;")


def test_a_bad_job_and_a_bad_token_are_refused_in_chinese(chinese: Any, people: dict[str, str]) -> None:
    client = chinese(people["stranger"])
    in_chinese(post(client, "/jobs", "/jobs", name="fit", script="echo no shebang", partition="", ncores="1",
                    memory="1", hours="1"), 422)
    in_chinese(post(client, "/keys/tokens", "/keys/tokens/new", name="laptop", days="7"), 422,
               "请至少选择一项")


def test_an_administrators_refusals_are_chinese(hub: Any, chinese: Any, people: dict[str, str]) -> None:
    client = chinese(people["admin"])
    taken = people["member"]
    in_chinese(post(client, "/admin/users", "/admin/users", username=taken, display_name="", password=""), 409,
               f"用户 {taken} 已存在")
    in_chinese(post(client, "/admin/users", "/admin/users", username="x" + secrets.token_hex(4), display_name="",
                    password="short"), 422, "密码长度须为")
    in_chinese(post(client, "/admin/workstations", "/admin/workstations", ip="not-an-ip", beamline="b7"), 422)
    in_chinese(post(client, f"/admin/proposals/{people['proposal']}/members", "/admin/proposals",
                    username="nobody-" + secrets.token_hex(3), role="member"), 404)
    address = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    assert post(client, "/admin/workstations", "/admin/workstations", ip=address, beamline="b7").status_code == 303
    in_chinese(post(client, "/admin/workstations", "/admin/workstations", ip=address, beamline="b7"), 409,
               f"工作站 {address} 已登记")
    assert re.search(r"工作站", client.get("/admin/workstations").text)
