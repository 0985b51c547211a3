"""The web page (mrctl ui, mrctl run --ui) in a real browser: headless Chromium driven by
Selenium (Debian's chromium and chromium-driver, installed by .ci/run), against real runs.

Every wait has a deadline (WebDriverWait, Popen.wait), none is a sleep. Screenshots of a running
and a finished page, and a timeline, are written to $MRCTL_TEST_ARTIFACTS (default
/tmp/mrctl-test-artifacts) for a person to look at; they are not committed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import ROOT
from jobs import write_paced_spec
from procs import read_until

from mrctl import keys
from mrctl.backends import local_registry
from mrctl.broker import Broker
from mrctl.errors import InfraError
from mrctl.history import History
from mrctl.web import actions

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
RUN_TIMEOUT_S = 180  # a run of two loaded cores, a Docker cluster's start and teardown included


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("MRCTL_TEST_ARTIFACTS") or "/tmp/mrctl-test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:  # a failure, not a skip: the browser tests are part of the suite
        pytest.fail(f"the browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} is "
                    "missing): apt-get install chromium chromium-driver (as root), as .ci/run does")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def ui_url():
    """`mrctl ui` on a free port, as a user starts it in another terminal."""
    proc = subprocess.Popen([sys.executable, "-m", "mrctl", "ui", "--port", "0"], cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        line = read_until(proc, "serving http", timeout=60)[-1]
        yield re.search(r"http://[\d.:]+", line).group(0)
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


def open_running_job(browser, url: str, name: str) -> str:
    """From the index's running jobs, follow the link of the job named `name`; its id."""
    from selenium.webdriver.common.by import By

    browser.get(url + "/")

    def follow(driver) -> str | None:
        found = driver.find_elements(By.XPATH, f"//table[@id='running']//tr[td[2]='{name}']//a")
        if not found:
            driver.refresh()
            return None
        job_id = found[0].text  # read and clicked in one try: a stale link is found again
        found[0].click()
        return job_id

    return page_wait(browser, RUN_TIMEOUT_S).until(follow)


def press(browser, button: str | tuple[str, str], confirm: bool = False) -> str:
    """Click the action button `button` (an id or a Selenium locator) once it is enabled,
    accepting its confirmation, and wait for the server's answer on the page; an error answer
    fails the test with what it said. "" when the page was reloaded first, the run having ended
    (a cancel's teardown can be that quick)."""
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


def test_watch_and_cancel_a_local_run(tmp_path, browser, ui_url, artifacts):
    name = unique_name("paced")
    proc, log = start_run(write_paced_spec(tmp_path, name, "local"))
    try:
        job_id = open_running_job(browser, ui_url, name)
        record = wait_for(lambda: next((r for r in local_registry.running() if r.job_id == job_id), None),
                          RUN_TIMEOUT_S, "the run's local record")
        kill_a_worker(browser)
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
        job_id = url.rsplit("/", 1)[1]
        browser.get(url)
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


def test_actions_need_the_token_and_the_page_origin(tmp_path, ui_url):
    name = unique_name("paced")
    proc, log = start_run(write_paced_spec(tmp_path, name, "local"))
    try:
        record = wait_for(lambda: next((r for r in local_registry.running() if r.job == name), None),
                          RUN_TIMEOUT_S, "the run's local record")
        broker = Broker(record.redis_url, retries=0)
        try:
            wait_for(lambda: live_snapshot(broker, record.job_id), RUN_TIMEOUT_S, "the run's live snapshot")
            with urllib.request.urlopen(ui_url + "/", timeout=30) as response:
                token = re.search(r'name="mrctl-token" content="([^"]+)"', response.read().decode()).group(1)
            cancel = f"{ui_url}/jobs/{record.job_id}/cancel"
            kill = f"{ui_url}/jobs/{record.job_id}/kill"
            refused = [
                _post(cancel, {}),
                _post(cancel, {"X-Mrctl-Token": token[:-1] + ("x" if token[-1] != "x" else "y")}),
                _post(cancel, {"X-Mrctl-Token": token, "Origin": "http://evil.example"}),
                _post(kill, {"X-Mrctl-Token": token, "Origin": "http://localhost.evil.example:80"}),
                _post(f"{ui_url}/clusters/{record.cluster}/remove", {"Origin": ui_url}),
            ]
            assert [code for code, _ in refused] == [403] * 5, refused
            rebound = _post(cancel, {"X-Mrctl-Token": token, "Host": "evil.example"})  # DNS rebinding
            assert rebound[0] == 400, rebound
            assert broker.r.llen(keys.control(record.job_id)) == 0, "a refused request queued a command"
            assert proc.poll() is None and json.loads(broker.live(record.job_id))["status"] == "running"
            assert "cancelled" not in log.read_text()
            accepted = _post(cancel, {"X-Mrctl-Token": token, "Origin": ui_url})
            assert accepted[0] == 200, accepted
        finally:
            broker.close()
        assert proc.wait(RUN_TIMEOUT_S) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


def test_a_finished_job_shows_summary_counters_and_timeline(tmp_path, browser, ui_url, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    name = unique_name("paced")
    spec = write_paced_spec(tmp_path, name, "local", lines=300)
    done = subprocess.run([sys.executable, "-m", "mrctl", "run", str(spec), "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    browser.get(f"{ui_url}/jobs/{job_id}")
    assert browser.find_element(By.ID, "status").text == "succeeded (exit 0)"
    summary = browser.find_element(By.ID, "summary").text
    assert "map tasks" in summary and "local, 2 workers" in summary
    counters = browser.find_element(By.ID, "counters").text
    assert re.search(r"words\s+seen\s+[\d,]+", counters), counters
    image = browser.find_element(By.CSS_SELECTOR, "#timeline img")
    WebDriverWait(browser, 60, poll_frequency=0.2).until(
        lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
    browser.save_screenshot(str(artifacts / "ui-finished.png"))
    token = browser.find_element(By.CSS_SELECTOR, 'meta[name="mrctl-token"]').get_attribute("content")
    code, said = _post(f"{ui_url}/jobs/{job_id}/kill", {"X-Mrctl-Token": token, "Origin": ui_url})
    assert (code, said) == (409, {"error": f"run {job_id} has ended: succeeded (exit 0)"})
    with urllib.request.urlopen(f"{ui_url}/jobs/{job_id}/timeline.svg", timeout=60) as response:
        assert response.headers["Content-Type"].startswith("image/svg+xml")
        (artifacts / "ui-timeline.svg").write_bytes(response.read())
    # and the index lists it from the history
    browser.get(ui_url + "/")
    assert job_id in browser.find_element(By.ID, "history").text


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_remove_a_kept_cluster_from_the_page(tmp_path, browser, docker_host, ui_url, artifacts):
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
    browser.get(ui_url + "/")
    row = texts(browser, "#clusters tbody tr")
    assert any(line.startswith(f"{cluster}kept") for line in row), row
    # the kept cluster still carries the job's id, but its job is over (its Redis says so)
    token = browser.find_element(By.CSS_SELECTOR, 'meta[name="mrctl-token"]').get_attribute("content")
    code, said = _post(f"{ui_url}/jobs/{job_id}/cancel", {"X-Mrctl-Token": token, "Origin": ui_url})
    assert (code, said) == (409, {"error": f"no run {job_id} is going on"})
    answer = press(browser, (By.XPATH, f"//button[@data-url='/clusters/{cluster}/remove']"), confirm=True)
    browser.save_screenshot(str(artifacts / "ui-removed-cluster.png"))
    assert f"removed cluster {cluster}" in answer, answer
    assert not docker_host.containers({"mrctl.job-id": job_id})
    assert not docker_host.networks({"mrctl.cluster": cluster})
