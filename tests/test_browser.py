"""The admin in a real headless browser: watch a running rotation move, press pause.

Uses Debian's chromium and chromedriver (``apt-get install chromium
chromium-driver``); nothing is downloaded at run time. The screenshot of the
paused run is kept in .data/artifacts/ (git-ignored).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from rotator.models import Run
from tests.conftest import ROOT, fill, manage, subprocess_env
from tests.environment import need

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / ".data" / "artifacts"
ROWS = 60_000
TIMEOUT = 60


@pytest.fixture
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        need("chromium", "needs Debian's chromium and chromium-driver (see .ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,900")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def heading(driver) -> str:
    """The page's h1, or "" while the page is being replaced."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.TAG_NAME, "h1").text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def percent(driver, run_id: int) -> float:
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.XPATH, f"//input[@value='{run_id}']/ancestor::tr")
    bar = row.find_element(By.CLASS_NAME, "rotator-progress")
    return float(bar.get_attribute("data-percent"))


def test_watch_a_rotation_move_and_pause_it(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    User.objects.create_superuser("operator", "op@example.com", "pw-for-tests")
    fill(ROWS)
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen(
            manage(
                "regenerate_token_async",
                "--workers",
                "2",
                "--batch-size",
                "100",
                "--generator",
                "tests.slow_tokens.slow_uuid",
            ),
            cwd=ROOT,
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=o,
            stderr=e,
        )
    try:
        browser.get(f"{live_server.url}/admin/login/?next=/admin/rotator/run/")
        browser.find_element(By.NAME, "username").send_keys("operator")
        browser.find_element(By.NAME, "password").send_keys("pw-for-tests")
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        run = wait_for(lambda: Run.objects.filter(state=Run.State.ACTIVE).first(), "the run")

        def moved_from(start: float):
            browser.refresh()
            now = percent(browser, run.pk)
            return now if now > start else None

        first = wait_for(lambda: moved_from(0.0), "some progress")
        second = wait_for(lambda: moved_from(first), "progress to move")
        assert 0 < first < second < 100

        browser.find_element(
            By.CSS_SELECTOR, f"input[name=_selected_action][value='{run.pk}']"
        ).click()
        Select(browser.find_element(By.NAME, "action")).select_by_value("pause_runs")
        browser.find_element(By.NAME, "index").click()
        assert f"Paused run {run.pk}." in browser.find_element(By.CLASS_NAME, "messagelist").text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "admin-paused-run.png"))
        shutil.copy(ARTIFACTS / "admin-paused-run.png", tmp_path / "admin-paused-run.png")

        paused = Run.objects.get(pk=run.pk)
        assert paused.state == Run.State.PAUSED
        assert paused.stop_reason == "admin user 'operator'"

        returncode = proc.wait(TIMEOUT)
        assert returncode == 3, err.read_text()
        assert "Paused by an operator" in err.read_text()
        assert paused.rows_done() < ROWS
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def log_in(driver, live_server, username: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{live_server.url}/admin/login/?next=/admin/rotator/run/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys("pw-for-tests")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    driver.find_element(By.ID, "result_list")


def test_a_view_only_user_cannot_act_and_cancel_asks_first(browser, live_server):
    from django.contrib.auth.models import Permission
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.support import interrupted_run

    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    viewer = User.objects.create_user("viewer", "v@example.com", "pw-for-tests", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_run"))
    User.objects.create_superuser("operator", "op@example.com", "pw-for-tests")

    log_in(browser, live_server, "viewer")
    browser.implicitly_wait(0)
    assert browser.find_elements(By.NAME, "action") == []
    assert browser.find_elements(By.NAME, "_selected_action") == []
    assert browser.find_elements(By.LINK_TEXT, "Start a rotation") == []
    # A crafted POST with the viewer's own CSRF token: the list again, nothing changed.
    for action in ("pause_runs", "cancel_runs", "resume_runs"):
        browser.execute_script(
            """
            const form = document.createElement("form");
            form.method = "post";
            const fields = {action: arguments[0], _selected_action: arguments[1], index: "0",
                            post: "yes",
                            csrfmiddlewaretoken: document.cookie.match(/csrftoken=([^;]+)/)[1]};
            for (const [name, value] of Object.entries(fields)) {
                const input = document.createElement("input");
                input.name = name; input.value = value; form.appendChild(input);
            }
            document.body.appendChild(form);
            form.submit();
            """,
            action,
            str(stopped.pk),
        )
        wait_for(lambda: browser.find_elements(By.ID, "result_list"), "the run list")
        assert browser.find_elements(By.CLASS_NAME, "messagelist") == []
    after = Run.objects.get(pk=stopped.pk)
    assert (after.state, after.stop_reason) == (Run.State.ACTIVE, "")
    browser.implicitly_wait(5)

    log_in(browser, live_server, "operator")
    browser.find_element(
        By.CSS_SELECTOR, f"input[name=_selected_action][value='{stopped.pk}']"
    ).click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("cancel_runs")
    browser.find_element(By.NAME, "index").click()
    # Until the confirmation page has replaced the list, its h1 is the list's (or stale).
    wait_for(lambda: heading(browser) == "Cancel these runs?", "the confirmation page")
    assert f"Run {stopped.pk} of tickets.Ticket.token" in browser.page_source
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ACTIVE  # asked, not done
    browser.find_element(By.CSS_SELECTOR, "input[value='Yes, cancel these runs']").click()
    messages = browser.find_element(By.CLASS_NAME, "messagelist").text
    assert f"Cancelled run {stopped.pk}." in messages
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ABANDONED
