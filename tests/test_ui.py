"""The web page (mrctl ui, mrctl run --ui) in a real browser: headless Chromium driven by
Selenium (from PATH, else fetched from the host's Debian mirror: tests/browser.py), against
real runs.

Every wait has a deadline (WebDriverWait, Popen.wait), none is a sleep. Screenshots of a running
and a finished page, and a timeline, are written to $MRCTL_TEST_ARTIFACTS (default
/tmp/mrctl-test-artifacts) for a person to look at; they are not committed.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser import Browser, obtain_browser
from conftest import ROOT
from jobs import write_paced_spec
from procs import read_until

from mrctl.backends import local_registry
from mrctl.broker import Broker, keys
from mrctl.errors import InfraError
from mrctl.observe.history import History
from mrctl.web import actions

pytestmark = pytest.mark.browser
RUN_TIMEOUT_S = 180  # a run of two loaded cores, a Docker cluster's start and teardown included


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("MRCTL_TEST_ARTIFACTS") or "/tmp/mrctl-test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def chromium() -> Browser:
    """Chromium and its driver, from PATH or fetched into mrctl's cache (tests/browser.py)."""
    try:
        return obtain_browser()
    except InfraError as exc:  # a failure, not a skip: the browser tests are part of the suite
        pytest.fail(str(exc))


@pytest.fixture
def browser(chromium: Browser):
    with chromium.session() as driver:
        yield driver


@dataclass(frozen=True)
class Ui:
    """A page's server: its address (no token) and the session token its printed URL carries."""

    url: str
    token: str

    def opening(self, path: str = "/") -> str:
        """The URL a user opens: `path` with the token, as the server prints it."""
        return f"{self.url}{path}?{urllib.parse.urlencode({'token': self.token})}"


def printed_ui(url: str) -> tuple[Ui, str]:
    """The Ui of a printed URL (http://127.0.0.1:PORT/PATH?token=T), and its PATH."""
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.hostname) == ("http", "127.0.0.1"), url
    token = urllib.parse.parse_qs(parts.query)["token"]
    assert len(token) == 1 and len(token[0]) >= 32, url
    return Ui(f"http://{parts.netloc}", token[0]), parts.path


@pytest.fixture
def ui():
    """`mrctl ui` on a free port, as a user starts it in another terminal: the URL it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "mrctl", "ui", "--port", "0"], cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        line = read_until(proc, "serving http", timeout=60)[-1]
        found, path = printed_ui(re.search(r"serving (http://\S+)", line).group(1))
        assert path == "/", line
        yield found
    finally:
        proc.terminate()
        proc.wait(20)


def start_run(spec: Path, *flags: str) -> tuple[subprocess.Popen, Path]:
    """`mrctl run SPEC --plain` in the spec's directory, its output in run.log beside it."""
    log = spec.parent / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mrctl", "run", str(spec), "--plain", *flags],
                                cwd=spec.parent, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    """The first truthy value of predicate() within `timeout` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(poll)  # polling a condition under a deadline, not synchronising on time
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def texts(driver, css: str) -> list[str]:
    """The text of every element matching `css`, read in one step: the page re-renders its
    tables and lists at each snapshot, so an element found a moment ago may be gone."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent)", css)


def text_of(driver, element_id: str) -> str | None:
    """The text of the element `element_id` (None when the page has none), read in one step
    like `texts`: a found element goes stale when a snapshot re-renders it."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : null", element_id)


def page_wait(browser, timeout: float):
    """A WebDriverWait that tries again when an element it found was re-rendered meanwhile
    (the page replaces its tables, lists and buttons' state at every snapshot)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def open_running_job(browser, ui: Ui, name: str) -> str:
    """From the index's running jobs (opened from the printed URL), follow the link of the job
    named `name`; its id."""
    from selenium.webdriver.common.by import By

    browser.get(ui.opening("/"))
    assert browser.current_url == ui.url + "/", "the token was not taken out of the address"

    def follow(driver) -> str | None:
        found = driver.find_elements(By.XPATH, f"//table[@id='running']//tr[td[2]='{name}']//a")
        if not found:
            driver.refresh()
            return None
        job_id = found[0].text  # read and clicked in one try: a stale link is found again
        found[0].click()
        return job_id

    return page_wait(browser, RUN_TIMEOUT_S).until(follow)


def press(browser, button: str | tuple[str, str], confirm: bool = False, refused: bool = False) -> str:
    """Click the action button `button` (an id or a Selenium locator) once it is enabled,
    accepting its confirmation, and wait for the server's answer on the page; an error answer
    fails the test with what it said (an ok one, when `refused`). "" when the page was reloaded
    first, the run having ended (a cancel's teardown can be that quick)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.execute_script("const e = document.getElementById('action-result'); e.textContent = ''; "
                           "e.className = 'note';")
    # enabled from the run's first snapshot (before it the run's Redis may not be up)
    live = browser.execute_script("return Boolean(document.getElementById('live'))")  # a running job's page
    locator = (By.ID, button) if isinstance(button, str) else button

    def click(driver) -> bool:  # found and clicked in one try: a re-rendered button is found again
        found = expected_conditions.element_to_be_clickable(locator)(driver)
        if found:
            found.click()
        return bool(found)

    page_wait(browser, RUN_TIMEOUT_S).until(click)
    if confirm:
        WebDriverWait(browser, 10).until(expected_conditions.alert_is_present()).accept()
    answer = WebDriverWait(browser, 60, poll_frequency=0.2).until(lambda d: d.execute_script(
        "if (arguments[0] && !document.getElementById('live')) return ['ended', ''];"  # reloaded: finished
        "const e = document.getElementById('action-result'); return e.textContent && [e.className, e.textContent];",
        live))
    if refused:
        assert answer[0] == "note error", f"the page's {button} was not refused: {answer}"
        return answer[1]
    assert answer[0] in ("note ok", "ended"), f"the page's {button} was refused: {answer[1]}"
    return answer[1]


def watch_progress_then_cancel(browser, artifacts: Path, shot: str) -> None:
    """On a running job's page: map progress moves (two different values read from the DOM),
    the worker table has rows; a screenshot; then the cancel button, confirmed."""
    def map_done(driver) -> int | None:
        text, total = text_of(driver, "map-done") or "", text_of(driver, "map-total") or ""
        return int(text) if text.isdigit() and total.isdigit() and int(total) > 0 else None

    wait = page_wait(browser, RUN_TIMEOUT_S)
    first = wait.until(lambda d: (map_done(d),) if map_done(d) is not None else None)[0]
    second = wait.until(lambda d: (n := map_done(d)) is not None and n > first and n)
    assert second > first
    rows = wait.until(lambda d: texts(d, "#workers tbody tr") or None)
    assert all("worker-" in row for row in rows), rows
    assert text_of(browser, "phase") in ("map", "reduce", "barrier")
    browser.save_screenshot(str(artifacts / shot))
    assert press(browser, "cancel", confirm=True) in ("", actions.MESSAGES["cancel"])


def kill_a_worker(browser) -> None:
    """The kill button: a busy worker is killed as --chaos would, and the page shows the event
    (a click while no worker is busy is answered by an event saying so: click again)."""
    def answers(driver) -> list[str]:
        return [e for e in texts(driver, "#events li") if "(web page)" in e or "web page: no busy worker" in e]

    for _ in range(5):
        seen = len(answers(browser))
        assert press(browser, "kill") == actions.MESSAGES["kill"]
        page_wait(browser, RUN_TIMEOUT_S).until(lambda d, seen=seen: len(answers(d)) > seen)
        if killed := [a for a in answers(browser) if re.search(r"chaos: killed worker-\d+ \(web page\)", a)]:
            break
    assert killed, answers(browser)


def assert_cancelled(proc: subprocess.Popen, log: Path, job_id: str, browser) -> None:
    assert proc.wait(RUN_TIMEOUT_S) == 130, log.read_text()
    assert "cancelled from the web page" in log.read_text()
    page_wait(browser, 60).until(lambda d: "cancelled" in (text_of(d, "status") or ""))
    with History() as h:
        run = h.get(job_id)
    assert (run.job_id, run.status, run.exit_code) == (job_id, "cancelled", 130)
    assert any(e.message == "cancelled from the web page" for e in run.events)
    assert not (log.parent / "out.json").exists(), "a cancelled run writes no output"


def test_the_browser_draws_text_with_a_font(browser):
    """The screenshots show text: each glyph comes from a font the browser found (a fetched
    copy has only its own, through the fontconfig file in it; with none, it draws nothing)."""
    from PIL import Image

    word = "mrctl"
    browser.get("data:text/html,<body style='margin:0;background:white'>"
                f"<p id=word style='font:40px sans-serif;color:black'>{word}</p></body>")
    root = browser.execute_cdp_cmd("DOM.getDocument", {})["root"]["nodeId"]
    node = browser.execute_cdp_cmd("DOM.querySelector", {"nodeId": root, "selector": "#word"})["nodeId"]
    browser.execute_cdp_cmd("CSS.enable", {})
    fonts = browser.execute_cdp_cmd("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    assert sum(font["glyphCount"] for font in fonts) == len(word), fonts
    grey = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L")
    assert sum(grey.histogram()[:128]) > 100, "the screenshot has no text in it"


def test_watch_and_cancel_a_local_run(tmp_path, browser, ui, artifacts):
    name = unique_name("paced")
    proc, log = start_run(write_paced_spec(tmp_path, name, "local"))
    try:
        job_id = open_running_job(browser, ui, name)
        record = wait_for(lambda: next((r for r in local_registry.running() if r.job_id == job_id), None),
                          RUN_TIMEOUT_S, "the run's local record")
        kill_a_worker(browser)
        browser.delete_all_cookies()  # as after a restart of mrctl ui: the page's token is gone
        assert press(browser, "kill", refused=True).startswith("403 Forbidden: this page needs its token")
        browser.get(ui.opening(f"/jobs/{job_id}"))
        watch_progress_then_cancel(browser, artifacts, "ui-running-local.png")
        assert_cancelled(proc, log, job_id, browser)
        browser.save_screenshot(str(artifacts / "ui-cancelled-local.png"))
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)
    left = [p for p in record.children if p.is_running()]
    assert not left, f"processes of the run left running: {left}"
    assert job_id not in [r.job_id for r in local_registry.records()]
    assert not Path(record.temp_dir).exists()


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_watch_and_cancel_a_docker_run_from_run_ui(tmp_path, browser, docker_host, artifacts):
    """`mrctl run --ui`: the page served by the run's own process, on Docker workers."""
    name = unique_name("paced-docker")
    proc, log = start_run(write_paced_spec(tmp_path, name, "docker"), "--ui")
    try:
        url = wait_for(lambda: re.search(r"the run's web page: (http://\S+)", log.read_text()),
                       RUN_TIMEOUT_S, "the page's URL in the run's output").group(1)
        page, path = printed_ui(url)
        job_id = path.rsplit("/", 1)[1]
        browser.get(url)
        assert browser.current_url == page.url + path, "the token was not taken out of the address"
        # the page is announced at the run's first snapshot, before its cluster has started
        wait_for(lambda: docker_host.containers({"mrctl.job-id": job_id}), RUN_TIMEOUT_S, "the run's containers")
        watch_progress_then_cancel(browser, artifacts, "ui-running-docker.png")
        assert_cancelled(proc, log, job_id, browser)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)
    assert not docker_host.containers({"mrctl.job-id": job_id}), "containers of the run left behind"
    assert not docker_host.networks({"mrctl.job-id": job_id}), "the run's network left behind"


def live_snapshot(broker: Broker, job_id: str) -> str | None:
    """The run's live snapshot; None before its Redis answers (its record is written first)."""
    try:
        return broker.live(job_id)
    except InfraError:
        return None


def _post(url: str, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, method="POST", data=b"", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body.startswith(b"{") else {"body": body.decode()}


def test_actions_need_the_token_and_the_page_origin(tmp_path, ui):
    name = unique_name("paced")
    proc, log = start_run(write_paced_spec(tmp_path, name, "local"))
    try:
        record = wait_for(lambda: next((r for r in local_registry.running() if r.job == name), None),
                          RUN_TIMEOUT_S, "the run's local record")
        broker = Broker(record.redis_url, retries=0)
        try:
            wait_for(lambda: live_snapshot(broker, record.job_id), RUN_TIMEOUT_S, "the run's live snapshot")
            token, cookie = ui.token, f"mrctl-token-{urllib.parse.urlsplit(ui.url).port}"
            wrong = token[:-1] + ("x" if token[-1] != "x" else "y")
            cancel = f"{ui.url}/jobs/{record.job_id}/cancel"
            kill = f"{ui.url}/jobs/{record.job_id}/kill"
            refused = [
                _post(cancel, {}),
                _post(cancel, {"X-Mrctl-Token": wrong}),
                _post(cancel, {"Cookie": f"{cookie}={wrong}", "Origin": ui.url}),
                _post(f"{cancel}?token={token}", {"Origin": ui.url}),  # the URL's token opens pages (GET) only
                _post(cancel, {"X-Mrctl-Token": token, "Origin": "http://evil.example"}),
                _post(kill, {"Cookie": f"{cookie}={token}", "Origin": "http://localhost.evil.example:80"}),
                _post(f"{ui.url}/clusters/{record.cluster}/remove", {"Origin": ui.url}),
            ]
            assert [code for code, _ in refused] == [403] * 7, refused
            rebound = _post(cancel, {"X-Mrctl-Token": token, "Host": "evil.example"})  # DNS rebinding
            assert rebound[0] == 400, rebound
            assert broker.r.llen(keys.control(record.job_id)) == 0, "a refused request queued a command"
            assert proc.poll() is None and json.loads(broker.live(record.job_id))["status"] == "running"
            assert "cancelled" not in log.read_text()
            accepted = _post(cancel, {"X-Mrctl-Token": token, "Origin": ui.url})
            assert accepted[0] == 200, accepted
        finally:
            broker.close()
        assert proc.wait(RUN_TIMEOUT_S) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


NOBODY = 65534


def as_nobody(method: str, url: str, *headers: str) -> tuple[int, str]:
    """curl as uid/gid 65534 (another local user): the status and the body (what came in 10 s,
    for a stream that goes on)."""
    assert os.geteuid() == 0, "this test plays another user with setpriv: run the suite as root (.ci/run does)"
    args = [arg for header in headers for arg in ("-H", header)]
    done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "curl", "-sS",
                           "--max-time", "10", "-X", method, *args, "-w", "\n%{http_code}", url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 28), done.stderr  # 28: --max-time ended an open stream
    body, _, code = done.stdout.rpartition("\n")
    return int(code), body


def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, list[str]], str]:
    """A GET that does not follow redirects: status, headers (lower-case names, every value)
    and body."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
        response = conn.getresponse()
        found: dict[str, list[str]] = {}
        for k, v in response.getheaders():
            found.setdefault(k.lower(), []).append(v)
        return response.status, found, response.read().decode()
    finally:
        conn.close()


def first_snapshot(url: str, cookie: str) -> dict:
    """The first `snapshot` event of a live feed read with `cookie` alone."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=RUN_TIMEOUT_S)
    try:
        conn.request("GET", parts.path, headers={"Cookie": cookie})
        response = conn.getresponse()
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        event = None
        while line := response.fp.readline().decode():
            if line.startswith("event: "):
                event = line[len("event: "):].strip()
            elif line.startswith("data: ") and event == "snapshot":
                return json.loads(line[len("data: "):])
        raise AssertionError("the feed ended without a snapshot")
    finally:
        conn.close()


def test_another_user_gets_403_and_no_data_without_the_token(tmp_path, ui):
    """Another local user (uid 65534) reaches 127.0.0.1 too: every route answers 403 with
    nothing of the runs; the printed URL's token, exchanged for an HttpOnly, SameSite=Strict
    cookie, opens the page and its feed."""
    done_dir, running_dir = tmp_path / "done", tmp_path / "running"
    done_dir.mkdir(), running_dir.mkdir()
    done_name, running_name = unique_name("finished"), unique_name("paced")
    done_spec = write_paced_spec(done_dir, done_name, "local", lines=200)
    done = subprocess.run([sys.executable, "-m", "mrctl", "run", str(done_spec), "--json"], cwd=done_dir,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    done_id = json.loads(done.stdout)["job_id"]
    proc, log = start_run(write_paced_spec(running_dir, running_name, "local"))
    try:
        record = wait_for(lambda: next((r for r in local_registry.running() if r.job == running_name), None),
                          RUN_TIMEOUT_S, "the run's local record")
        broker = Broker(record.redis_url, retries=0)
        try:
            wait_for(lambda: live_snapshot(broker, record.job_id), RUN_TIMEOUT_S, "the run's live snapshot")
            secrets_of_the_runs = [done_name, running_name, str(tmp_path), done_id, record.job_id, ui.token]
            run_id = record.job_id
            wrong = ui.token[:-1] + ("x" if ui.token[-1] != "x" else "y")
            answers = {
                "index": as_nobody("GET", ui.url + "/"),
                "finished page": as_nobody("GET", f"{ui.url}/jobs/{done_id}"),
                "running page": as_nobody("GET", f"{ui.url}/jobs/{run_id}"),
                "feed": as_nobody("GET", f"{ui.url}/jobs/{run_id}/events"),
                "timeline": as_nobody("GET", f"{ui.url}/jobs/{done_id}/timeline.svg"),
                "script": as_nobody("GET", f"{ui.url}/static/mrctl.js"),
                "no such page": as_nobody("GET", f"{ui.url}/nothing"),
                "a wrong token": as_nobody("GET", f"{ui.url}/?token={wrong}"),
                "cancel": as_nobody("POST", f"{ui.url}/jobs/{run_id}/cancel", f"Origin: {ui.url}"),
                "kill": as_nobody("POST", f"{ui.url}/jobs/{run_id}/kill", f"Origin: {ui.url}"),
                "remove": as_nobody("POST", f"{ui.url}/clusters/{record.cluster}/remove", f"Origin: {ui.url}"),
            }
            assert {what: code for what, (code, _) in answers.items()} == {what: 403 for what in answers}
            for what, (_, body) in answers.items():
                leaked = [s for s in secrets_of_the_runs if s in body]
                assert not leaked, f"{what}: the 403 body shows {leaked}: {body!r}"
            assert broker.r.llen(keys.control(run_id)) == 0, "a refused request queued a command"
            assert proc.poll() is None and json.loads(broker.live(run_id))["status"] == "running"

            # the printed URL: a cookie for the token, and the same address without it
            code, headers, _ = get(ui.opening(f"/jobs/{done_id}"), {})
            assert code == 303 and headers["location"] == [f"/jobs/{done_id}"], (code, headers)
            [set_cookie] = headers["set-cookie"]
            attributes = [a.strip().lower() for a in set_cookie.split(";")]
            name, value = set_cookie.split(";")[0].split("=", 1)
            assert value == ui.token and "httponly" in attributes and "samesite=strict" in attributes, set_cookie
            cookie = f"{name}={value}"
            code, _, index = get(ui.url + "/", {"Cookie": cookie})
            assert code == 200 and running_name in index and done_name in index
            code, _, page = get(f"{ui.url}/jobs/{done_id}", {"Cookie": cookie})
            assert code == 200 and str(done_spec) in page and str(done_dir / "out.json") in page
            assert first_snapshot(f"{ui.url}/jobs/{run_id}/events", cookie)["name"] == running_name
            code, _, script = get(f"{ui.url}/static/mrctl.js", {"Cookie": cookie})
            assert code == 200 and "EventSource" in script
            assert _post(f"{ui.url}/jobs/{run_id}/cancel", {"Cookie": cookie, "Origin": ui.url})[0] == 200
        finally:
            broker.close()
        assert proc.wait(RUN_TIMEOUT_S) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


def test_a_finished_job_shows_summary_counters_and_timeline(tmp_path, browser, ui, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    name = unique_name("paced")
    spec = write_paced_spec(tmp_path, name, "local", lines=300)
    done = subprocess.run([sys.executable, "-m", "mrctl", "run", str(spec), "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    browser.get(ui.opening(f"/jobs/{job_id}"))
    assert browser.current_url == f"{ui.url}/jobs/{job_id}", "the token was not taken out of the address"
    assert browser.find_element(By.ID, "status").text == "succeeded (exit 0)"
    summary = browser.find_element(By.ID, "summary").text
    assert "map tasks" in summary and "local, 2 workers" in summary
    counters = browser.find_element(By.ID, "counters").text
    assert re.search(r"words\s+seen\s+[\d,]+", counters), counters
    image = browser.find_element(By.CSS_SELECTOR, "#timeline img")
    WebDriverWait(browser, 60, poll_frequency=0.2).until(
        lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
    browser.save_screenshot(str(artifacts / "ui-finished.png"))
    assert ui.token not in browser.page_source, "the page shows its token"
    code, said = _post(f"{ui.url}/jobs/{job_id}/kill", {"X-Mrctl-Token": ui.token, "Origin": ui.url})
    assert (code, said) == (409, {"error": f"run {job_id} has ended: succeeded (exit 0)"})
    svg = urllib.request.Request(f"{ui.url}/jobs/{job_id}/timeline.svg", headers={"X-Mrctl-Token": ui.token})
    with urllib.request.urlopen(svg, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("image/svg+xml")
        (artifacts / "ui-timeline.svg").write_bytes(response.read())
    # and the index lists it from the history
    browser.get(ui.url + "/")  # the cookie alone, from here on
    assert job_id in browser.find_element(By.ID, "history").text


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_remove_a_kept_cluster_from_the_page(tmp_path, browser, docker_host, ui, artifacts):
    """A cluster left by --keep is listed with a remove button, which does what mrctl down does."""
    from selenium.webdriver.common.by import By

    spec = write_paced_spec(tmp_path, unique_name("kept"), "docker", lines=100, mapper="WordMapper")
    # recorded in a history of its own: the page finds the job only by its cluster's labels
    done = subprocess.run([sys.executable, "-m", "mrctl", "run", str(spec), "--keep", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          env={**os.environ, "MRCTL_HISTORY": str(tmp_path / "elsewhere.sqlite")})
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    kept = docker_host.containers({"mrctl.job-id": job_id})
    assert kept, "--keep left no container"
    cluster = kept[0].labels["mrctl.cluster"]
    browser.get(ui.opening("/"))
    row = texts(browser, "#clusters tbody tr")
    assert any(line.startswith(f"{cluster}kept") for line in row), row
    # the kept cluster still carries the job's id, but its job is over (its Redis says so)
    code, said = _post(f"{ui.url}/jobs/{job_id}/cancel", {"X-Mrctl-Token": ui.token, "Origin": ui.url})
    assert (code, said) == (409, {"error": f"no run {job_id} is going on"})
    answer = press(browser, (By.XPATH, f"//button[@data-url='/clusters/{cluster}/remove']"), confirm=True)
    browser.save_screenshot(str(artifacts / "ui-removed-cluster.png"))
    assert f"removed cluster {cluster}" in answer, answer
    assert not docker_host.containers({"mrctl.job-id": job_id})
    assert not docker_host.networks({"mrctl.cluster": cluster})
