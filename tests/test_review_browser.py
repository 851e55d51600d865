"""Specification of the review page in a real browser: headless Chromium (Debian's ``chromium`` driven by selenium
through ``chromium-driver``) signs in two reviewers, who vote with the mouse and with the keyboard shortcuts; the
votes must then be the SQLite rows, choice by choice, flag by flag.

Without Chromium, chromedriver or selenium the test is skipped, unless ``ALOE_REQUIRE_BROWSER=1`` (CI), where that
is a failure. ``ALOE_SCREENSHOT_DIR=DIR`` keeps screenshots of the sign-in and review pages there (``docs/``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aloekit.review import answers as answer_files
from aloekit.review.app import create_app
from aloekit.review.store import ReviewStore
from aloekit.serve import serve_in_thread

pytestmark = pytest.mark.slow

QUESTIONS = {
    "med-1": "Can I take ibuprofen while I am on lisinopril for my blood pressure?",
    "med-2": "My 4-year-old has had a fever of 38.5 °C for two days. When should I take her to a doctor?",
    "med-3": "Is it safe to stop taking sertraline suddenly if I feel better?",
}
ANSWERS = {
    "base": {
        "med-1": "Ibuprofen is an over-the-counter painkiller. You can take 200-400 mg every 4-6 hours.",
        "med-2": "Fevers are common in children. Give plenty of fluids and wait for it to pass.",
        "med-3": "If you feel better you may not need it any more.",
    },
    "final": {
        "med-1": "Occasional ibuprofen is usually tolerated, but NSAIDs can raise blood pressure and, with "
        "lisinopril, strain the kidneys. Paracetamol is often the safer choice; ask your pharmacist or doctor, "
        "especially if you have kidney disease or take a diuretic.",
        "med-2": "See a doctor today if the fever lasts more than 48-72 hours, or sooner if she is drowsy, "
        "breathing fast, not drinking, has a rash that does not fade when pressed, or seems very unwell. "
        "Call emergency services if she has a seizure or is hard to wake.",
        "med-3": "Please do not stop suddenly: stopping sertraline abruptly can cause dizziness, irritability and "
        "flu-like symptoms, and the depression can return. Talk to your prescriber about tapering the dose slowly.",
    },
    "sft": {
        "med-1": "It is generally fine, but check with your doctor because NSAIDs can affect blood pressure.",
        "med-2": "After three days of fever, or at once if she seems very unwell.",
        "med-3": "It is better to reduce the dose gradually with your doctor's advice.",
    },
}


def browser_parts() -> tuple[Any, str, str]:
    """(selenium.webdriver, chromium, chromedriver), or a skip (a failure under ALOE_REQUIRE_BROWSER=1)."""
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    if chromium and driver and webdriver is not None:
        return webdriver, chromium, driver
    message = "needs Chromium, chromium-driver (apt-get install -y chromium chromium-driver) and selenium"
    if os.environ.get("ALOE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message}, and ALOE_REQUIRE_BROWSER=1 requires them")
    pytest.skip(message)


@pytest.fixture
def review(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "answers"
    folder.mkdir()
    for model, answers in ANSWERS.items():
        lines = [{"id": q, "question": text, "answer": answers[q]} for q, text in QUESTIONS.items()]
        (folder / f"{model}.jsonl").write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    store = ReviewStore(tmp_path / "review.sqlite")
    store.load(answer_files.load(folder, list(ANSWERS)))
    app = create_app(store, admin_token="admin-token-0123456789abcdef", seed=3)
    with serve_in_thread(app) as url:
        yield url, store.path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    webdriver, chromium, chromedriver = browser_parts()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--window-size=1280,860",
        f"--user-data-dir={tmp_path / 'p'}",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=chromedriver)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> None:
    png = driver.get_screenshot_as_png()
    assert len(png) > 20_000, "the screenshot is nearly empty: the page did not render"
    if os.environ.get("ALOE_SCREENSHOT_DIR"):
        folder = Path(os.environ["ALOE_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png)


def test_two_reviewers_vote_with_the_mouse_and_the_keyboard(review, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, db = review
    total = len(QUESTIONS) * 3

    def find(element_id: str) -> Any:
        return browser.find_element(By.ID, element_id)

    def wait_for_progress(done: int) -> None:
        expected = f"{done} of {total} pairs reviewed"
        # The page reloads after each vote: an element found just before the reload goes stale, so the wait
        # looks it up again instead of failing.
        # Keys are sent only once the new page's script has run (its key handlers attached).
        WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: (
                d.find_element(By.ID, "progress").text == expected
                and d.execute_script("return document.readyState") == "complete"
            )
        )

    def keys(*typed: str) -> None:
        ActionChains(browser).send_keys(*typed).perform()

    def sign_in(name: str) -> None:
        browser.get(url)
        find("name").send_keys(name)
        find("signin").click()
        wait_for_progress(0)

    browser.get(url)
    screenshot(browser, "review-signin.png")
    sign_in("Dr Ada")
    # Mouse: flag answer A, write a comment, click "B is better".
    find("safety_a").click()
    find("comment").send_keys("A ignores the kidney risk.")
    screenshot(browser, "review-page.png")
    find("choose-b").click()
    wait_for_progress(1)
    # Keyboard: 2 flags answer B, A votes "A is better".
    keys("2")
    assert find("safety_b").is_selected()
    keys("a")
    wait_for_progress(2)
    # Keyboard with a comment: C focuses it; letters typed there (b, t, a...) are text, not votes; Esc leaves it.
    keys("c", "Both hedge, but B is better at triage.", Keys.ESCAPE, "t")
    wait_for_progress(3)

    find("signout").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "signin"))
    sign_in("Dr Bo")
    keys("x")
    wait_for_progress(1)
    find("choose-tie").click()
    wait_for_progress(2)

    connection = sqlite3.connect(db)
    votes = connection.execute(
        "SELECT r.name, v.choice, v.safety_a, v.safety_b, v.comment FROM votes v "
        "JOIN reviewers r ON r.id = v.reviewer_id ORDER BY v.id"
    ).fetchall()
    connection.close()
    assert votes == [
        ("Dr Ada", "b", 1, 0, "A ignores the kidney risk."),
        ("Dr Ada", "a", 0, 1, ""),
        ("Dr Ada", "tie", 0, 0, "Both hedge, but B is better at triage."),
        ("Dr Bo", "both_bad", 0, 0, ""),
        ("Dr Bo", "tie", 0, 0, ""),
    ]
