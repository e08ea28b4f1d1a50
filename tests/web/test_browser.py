"""The web app end to end in headless Chromium (Debian's ``chromium``, driven by Playwright; no browser is
ever downloaded) against ``msgr-bridge run`` in a subprocess, with the loopback network enabled and a real
ngIRCd: create the owner's login from the printed setup link, link an IRC account (correcting a wrong port
on the same step), receive a message live, reply, see the reply delivered (and the IRC user receive it),
search for it, and look at the operations page. Screenshots of each page go to ``test-artifacts/webapp/``.

Skipped, with the reason, when ``chromium``, ngircd or the ``playwright`` package is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import segno
from msgr_bridge_loopback import LoopbackNetwork
from msgr_bridge_loopback.remote import RemoteNetworkServer

from msgr_bridge.store.db import Database
from msgr_bridge.testing import servers
from msgr_bridge.testing.chaos import BridgeProcess
from msgr_bridge.testing.ngircd import NgircdServer, NgircdUnavailable, start_ngircd

pytestmark = [pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "webapp"
PASSWORD = "a long enough password"
CHANNEL = "#webapp"
NET = "webapp"

playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")


class IrcUser:
    """A minimal IRC client on a raw socket: registers, joins, says, and collects what it hears."""

    def __init__(self, server: NgircdServer, nick: str) -> None:
        self.server, self.nick = server, nick
        self.lines: list[str] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> IrcUser:
        self._reader, self._writer = await asyncio.open_connection(self.server.host, self.server.port)
        self.send(f"NICK {self.nick}", f"USER {self.nick} 0 * :{self.nick}")
        self._task = asyncio.ensure_future(self._read())
        await self.wait_for(r" 001 ")
        self.send(f"JOIN {CHANNEL}")
        await self.wait_for(rf"JOIN :?{CHANNEL}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.send("QUIT :bye")
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()

    def send(self, *lines: str) -> None:
        assert self._writer is not None
        for line in lines:
            self._writer.write(line.encode() + b"\r\n")

    async def _read(self) -> None:
        assert self._reader is not None
        while line := await self._reader.readline():
            text = line.decode(errors="replace").rstrip("\r\n")
            if text.startswith("PING"):
                self.send("PONG" + text[4:])
            self.lines.append(text)

    async def wait_for(self, pattern: str, timeout: float = 15) -> str:
        with anyio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if re.search(pattern, line):
                        return line
                await anyio.sleep(0.05)


@pytest.fixture
def ngircd() -> AsyncIterator[NgircdServer]:
    try:
        server = start_ngircd()
    except NgircdUnavailable as exc:
        pytest.skip(f"ngircd is needed: {exc}")
    try:
        yield server
    finally:
        server.stop()
        server.cleanup()


async def _setup_link(bridge: BridgeProcess, log: Path) -> str:
    with anyio.fail_after(30):
        while True:
            text = await anyio.Path(log).read_text(errors="replace")
            found = re.search(r"(http://\S+/#setup=[\w-]+)", text)
            if found:
                return found.group(1)
            assert bridge.alive(), bridge.tail()
            await anyio.sleep(0.1)


@pytest.fixture
async def loopback() -> AsyncIterator[RemoteNetworkServer]:
    LoopbackNetwork.reset(NET)
    net = LoopbackNetwork.get(NET)
    net.add_user("bridge", "Bridge", password="pw-bridge")
    net.add_user("bob", "Bob")
    net.create_group("g1", "Loopback room", ["bridge", "bob"])
    async with RemoteNetworkServer(net) as server:
        yield server


async def test_web_app_end_to_end(
    tmp_path: Path, ngircd: NgircdServer, loopback: RemoteNetworkServer
) -> None:
    if CHROMIUM is None:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium; scripts/dev.sh installs it)"
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    async with Database(url) as db:
        await db.migrate()
    port = servers.free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
        "MSGR_BRIDGE__DATABASE__URL": url,
        "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp_path / "data"),
        "MSGR_BRIDGE__API__PORT": str(port),
        "MSGR_BRIDGE__PLUGINS__ALLOW": "loopback,irc,xmpp,snapchat",
        "MSGR_BRIDGE__LOGGING__LEVEL": "info",
        "MSGR_BRIDGE__BRIDGE__SHUTDOWN_TIMEOUT_S": "5",
    }
    bridge = BridgeProcess(tmp_path, env)
    bridge.start()
    try:
        link = await _setup_link(bridge, tmp_path / "bridge-1.log")
        assert link.startswith(f"http://127.0.0.1:{port}/#setup=")
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page(viewport={"width": 1100, "height": 900})
                page.set_default_timeout(15_000)
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on(  # the browser's own notes on refused requests are expected (a wrong answer, a 404)
                    "console",
                    lambda m: (
                        errors.append(m.text)
                        if m.type == "error" and "Failed to load resource" not in m.text
                        else None
                    ),
                )
                async with _dialogs(page) as answers:
                    await _walk_through(page, link, ngircd)
                    await _loopback_actions(page, loopback, answers)
                await page.set_viewport_size({"width": 390, "height": 844})  # a phone
                await page.goto(f"http://127.0.0.1:{port}/#/inbox")
                await page.get_by_role("link", name=re.compile(CHANNEL)).first.wait_for()
                await page.screenshot(path=ARTIFACTS / "inbox-phone.png", full_page=True)
                assert not errors, errors  # no script error on any page
            finally:
                await browser.close()
    finally:
        await bridge.stop()


async def _walk_through(p: Any, link: str, irc: NgircdServer) -> None:
    """``p``: playwright's ``Page``."""
    expect = playwright_api.expect
    await p.goto(link)
    await p.get_by_label("Name").fill("owner")
    await p.get_by_label(re.compile("^Password")).fill(PASSWORD)
    await p.get_by_role("button", name="Create login").click()
    await expect(p.get_by_role("heading", name="Inbox")).to_be_visible()
    assert "#setup=" not in p.url

    # Accounts: a QR step refreshes its picture (answers of the link API stubbed in the page: no network
    # with a QR login is reachable from a test), then link IRC for real
    await p.get_by_role("link", name="Accounts").click()
    await _qr_refreshes(p)
    await expect(p.get_by_text("unsupported").first).to_be_visible()
    await p.get_by_label("Network", exact=True).select_option("irc")
    await p.get_by_role("button", name="Start linking").click()
    await p.get_by_label(re.compile(r"^Host( \*)?$")).fill(irc.host)
    await p.get_by_label(re.compile(r"^Nick( \*)?$")).fill("webbot")
    await p.get_by_label(re.compile(r"^Port( \*)?$")).fill(str(servers.free_port()))
    await p.get_by_label(re.compile("^Tls$")).uncheck()
    await p.get_by_label(re.compile(r"^Channels( \*)?$")).fill(CHANNEL)
    await p.screenshot(path=ARTIFACTS / "accounts-link-form.png", full_page=True)
    await _labelled(p)
    await p.get_by_role("button", name="Continue").click()
    await expect(p.get_by_role("alert")).to_be_visible()
    await p.get_by_label(re.compile(r"^Port( \*)?$")).fill(str(irc.port))
    await p.get_by_role("button", name="Continue").click()
    card = p.locator("article.account")
    await expect(card.get_by_text("connected", exact=True)).to_be_visible(timeout=20_000)
    await p.screenshot(path=ARTIFACTS / "accounts.png", full_page=True)
    await _labelled(p)

    async with IrcUser(irc, "alice") as alice:
        await alice.wait_for(r" 353 .*webbot", timeout=5)  # the bridge's nick is in the channel
        await p.get_by_role("link", name="Inbox").click()
        alice.send(f"PRIVMSG {CHANNEL} :hello from irc")
        conv = p.get_by_role("link", name=re.compile(CHANNEL)).first
        await expect(conv).to_contain_text("hello from irc")  # arrives live, no reload
        await p.screenshot(path=ARTIFACTS / "inbox.png", full_page=True)
        await _labelled(p)
        await conv.click()
        messages = p.get_by_role("list", name="Messages")
        await expect(messages).to_contain_text("hello from irc")
        alice.send(f"PRIVMSG {CHANNEL} :a live message for the web")
        await expect(messages).to_contain_text("a live message for the web")  # over the event stream

        await p.get_by_label("Message", exact=True).fill("a reply from the web app")
        await p.get_by_role("button", name="Send").click()
        await alice.wait_for(r"PRIVMSG #webapp :a reply from the web app")
        mine = p.locator("li.msg.mine", has_text="a reply from the web app")
        await expect(mine.locator("[data-delivery]")).to_have_attribute(
            "data-delivery", re.compile("sent|delivered")
        )
        await p.screenshot(path=ARTIFACTS / "conversation.png", full_page=True)
        await _labelled(p)

    # Search: the message that arrived live is found, highlighted, and its result opens the conversation
    await p.get_by_role("link", name="Search").click()
    await p.get_by_label("Search for").fill("live")
    await p.get_by_role("button", name="Search", exact=True).click()
    result = p.locator("ol.results li", has_text="a live message for the web")
    await expect(result.locator("mark", has_text=re.compile("^live$", re.I))).to_be_visible()
    await p.screenshot(path=ARTIFACTS / "search.png", full_page=True)
    await _labelled(p)
    await result.get_by_role("link").click()
    await expect(p.get_by_role("list", name="Messages")).to_contain_text("a live message for the web")

    # Operations: health, outbox, audit verify, tokens
    await p.get_by_role("link", name="Operations").click()
    await p.get_by_role("button", name="Verify the audit log").click()
    await expect(p.get_by_role("status").filter(has_text="intact")).to_be_visible()
    await p.get_by_label("Name", exact=True).fill("phone")
    await p.get_by_role("button", name="Create token").click()
    await expect(p.get_by_text("shown only now")).to_be_visible()
    await p.screenshot(path=ARTIFACTS / "operations.png", full_page=True)
    await _labelled(p)


def _qr_uri(data: str) -> str:
    return str(segno.make(data).png_data_uri(scale=4))


async def _qr_refreshes(p: Any) -> None:
    expect = playwright_api.expect
    first, second = _qr_uri("code one"), _qr_uri("code two")
    polls: list[str] = []

    def flow(status: str, qr: str) -> str:
        step = {"kind": "qr_code", "prompt": "Scan with your phone", "fields": [], "qr_png_data_uri": qr}
        return json.dumps({"id": "fl_qr", "network": "loopback", "status": status, "step": step})

    async def start(route: Any) -> None:
        await route.fulfill(status=201, content_type="application/json", body=flow("pending", first))

    async def poll(route: Any) -> None:
        polls.append(route.request.method)
        if route.request.method == "DELETE":
            await route.fulfill(content_type="application/json", body=flow("cancelled", second))
        else:
            await route.fulfill(content_type="application/json", body=flow("pending", second))

    await p.route("**/v1/links", start)
    await p.route("**/v1/links/fl_qr", poll)
    await p.get_by_label("Network", exact=True).select_option("loopback")
    await p.get_by_role("button", name="Start linking").click()
    qr = p.get_by_role("img", name=re.compile("QR code"))
    await expect(qr).to_have_attribute("src", first)
    await expect(qr).to_have_attribute("src", second, timeout=10_000)  # the page polled and swapped it
    await p.get_by_role("button", name="Cancel").click()
    await expect(p.get_by_text("Linking cancelled.")).to_be_visible()
    assert polls[0] == "GET" and polls[-1] == "DELETE"
    await p.unroute("**/v1/links")
    await p.unroute("**/v1/links/fl_qr")


async def _labelled(p: Any) -> None:
    """Every form control on the page has a label a screen reader announces; the page has its landmarks."""
    unlabelled = await p.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea, button")]
            .filter((el) => !el.closest("[hidden]"))
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                && !(el.tagName === "BUTTON" && el.textContent.trim()))
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == [], unlabelled
    assert await p.locator("main").count() == 1 and await p.get_by_role("navigation").count() == 1


@contextlib.asynccontextmanager
async def _dialogs(page: Any) -> AsyncIterator[list[str]]:
    """Answer the page's prompt and confirm dialogs with what the test puts in the list, in order."""
    answers: list[str] = []

    async def answer(dialog: Any) -> None:
        await dialog.accept(answers.pop(0) if answers else None)

    page.on("dialog", answer)
    yield answers


async def _loopback_actions(p: Any, server: RemoteNetworkServer, answers: list[str]) -> None:
    """Link a loopback account (hosted by this process), then reply, react, edit and delete in it."""
    expect = playwright_api.expect
    net = server.network
    await p.get_by_role("link", name="Accounts").click()
    await p.get_by_label("Network", exact=True).select_option("loopback")
    await p.get_by_role("button", name="Start linking").click()
    await p.get_by_label(re.compile(r"^User id")).fill("bridge")
    await p.get_by_label(re.compile(r"^Url")).fill(server.url)
    await p.get_by_label(re.compile(r"^Password")).fill("pw-bridge")
    await p.get_by_role("button", name="Continue").click()
    card = p.locator("article.account", has_text="loopback")
    await expect(card.get_by_text("connected", exact=True)).to_be_visible(timeout=20_000)

    net.post("g1", "bob", "hello from bob")
    await p.get_by_role("link", name="Inbox").click()
    await p.get_by_role("link", name=re.compile("Loopback room")).click()
    messages = p.get_by_role("list", name="Messages")
    bob = messages.locator("li.msg", has_text="hello from bob")
    await expect(bob).to_be_visible()

    answers.append("🎉")
    await bob.get_by_role("button", name=re.compile("^React")).click()
    await expect(bob.get_by_label("Reactions")).to_contain_text("🎉")
    assert any(x["type"] == "reaction" and x["emoji"] == "🎉" for x in net.log)

    await bob.get_by_role("button", name=re.compile("^Reply")).click()
    await p.get_by_label("Message", exact=True).fill("answering bob")
    await p.get_by_role("button", name="Send").click()
    mine = messages.locator("li.msg.mine", has_text="answering bob")
    await expect(mine.locator(".quote")).to_contain_text("hello from bob")
    sent = [x for x in net.log if x["type"] == "message" and x["text"] == "answering bob"]
    assert sent and sent[0].get("reply_to")

    answers.append("answering bob, edited")
    await mine.get_by_role("button", name=re.compile("^Edit")).click()
    edited = messages.locator("li.msg.mine", has_text="answering bob, edited")
    await expect(edited).to_contain_text("(edited)")
    answers.append("")  # the confirm dialog
    await edited.get_by_role("button", name=re.compile("^Delete")).click()
    await expect(messages.locator("li.msg.mine").last).to_contain_text("deleted")
    assert any(x["type"] == "delete" for x in net.log)

    await p.get_by_label("Message", exact=True).fill("with a file")
    await p.get_by_label("Attach").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"some notes"}]
    )
    await p.get_by_role("button", name="Send").click()
    with_file = messages.locator("li.msg.mine", has_text="with a file")
    await expect(with_file.get_by_role("link", name="notes.txt")).to_be_visible()
    assert [x for x in net.log if x["type"] == "message" and x["text"] == "with a file"]

    # the search page's highlighting: offsets into the snippet, the text escaped (never read as HTML)
    marks = await p.evaluate(
        """async () => {
            const { highlighted } = await import("/assets/pages/search.js");
            const p = document.createElement("p");
            p.append(...highlighted("<b>x</b> and live", [[13, 17], [0, 3]]));
            const q = document.createElement("p");  // offsets count code points: an emoji is one
            q.append(...highlighted("\\u{1F600} live", [[2, 6]]));
            return [p.innerHTML, [...p.querySelectorAll("mark")].map((m) => m.textContent), q.innerHTML];
        }"""
    )
    assert marks == [
        "<mark>&lt;b&gt;</mark>x&lt;/b&gt; and <mark>live</mark>",
        ["<b>", "live"],
        "\U0001f600 <mark>live</mark>",
    ]

    # unlink the loopback account (after a confirmation), from the keyboard
    await p.get_by_role("link", name="Accounts").click()
    answers.append("")
    await card.get_by_role("button", name="Unlink").focus()
    await p.keyboard.press("Enter")
    await expect(card).to_have_count(0)
    await expect(p.locator("article.account")).to_have_count(1)  # the IRC account stays
    await p.screenshot(path=ARTIFACTS / "conversation-loopback.png", full_page=True)
    await _labelled(p)
