"""The feedback widget and the review page in a real headless Chromium (Selenium + chromedriver).

The widget runs on a chat page served from another origin (a tiny static server), loads
/ui/widget.js from the processor and posts to /v1/feedback across origins (CORS, bearer token).
A reviewer logs in, stores a correction, and `otel-chatbot export` puts it in the training data.
Screenshots land in the test's temp dir; OTEL_CHATBOT_SCREENSHOTS=docs/images copies them there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from browser_support import browser_binaries, chromium, static_site
from prometheus_client.parser import text_string_to_metric_families
from server_support import base_url, running, turn_request, wait_until
from tools import free_port
from ui_support import reviews, seed

from otel_chatbot.ui.session import COOKIE_NAME

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"
LONG_ID = "x" * 300  # refused by /v1/feedback (400): the widget must show the error
CORRECTION = ("I'm sorry it hasn't arrived. I've opened a carrier trace for order 48213; you'll get an "
              "update by e-mail within 24 hours.")

CHAT_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Acme support chat</title>
<style>
 body {{ font: 15px system-ui, sans-serif; background: #eef1f5; margin: 0; }}
 .chat {{ max-width: 560px; margin: 32px auto; background: #fff; border-radius: 12px; padding: 16px 20px;
          box-shadow: 0 2px 10px rgba(0,0,0,.08); }}
 h1 {{ font-size: 17px; margin: 0 0 12px; }}
 .msg {{ padding: 9px 13px; border-radius: 12px; margin: 8px 0; max-width: 80%; }}
 .user {{ background: #2f6fde; color: #fff; margin-left: auto; }}
 .bot {{ background: #f1f3f6; }}
 .row {{ margin: 0 0 14px; }}
</style></head><body><div class="chat"><h1>Acme support</h1>
<div class="msg user">Where is my order 48213?</div>
<div class="msg bot">Order 48213 was delivered on Monday to your front door.</div>
<div class="row" id="rated" data-otel-chatbot-turn="{turn_id}"></div>
<div class="msg user">Can I get a refund?</div>
<div class="msg bot">Refunds for lost parcels take 5 to 7 business days.</div>
<div class="row" id="broken" data-otel-chatbot-turn="{long_id}"></div>
</div>
<script src="{processor}/ui/widget.js" data-endpoint="{processor}" data-token="{token}" defer></script>
</body></html>"""


# A chat page whose widget points at a port where nothing listens: the post fails in the network.
UNREACHABLE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>down</title></head><body>
<div id="down" data-otel-chatbot-turn="turn-1"></div>
<script src="{processor}/ui/widget.js" data-endpoint="http://127.0.0.1:{closed_port}"></script>
</body></html>"""


def _screenshot(driver: Any, tmp_path: Path, name: str, *, publish: bool = True) -> None:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("OTEL_CHATBOT_SCREENSHOTS")
    if target and publish:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)


def _fit_page(driver: Any, width: int = 1280) -> None:
    """Grow the window to the page's height so a screenshot shows all of it, from the top."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height) + 120, 2400))
    driver.execute_script("window.scrollTo(0, 0)")


def _feedback_metric(metrics_url: str) -> dict[str, float]:
    """chatbot_feedback_total summed per rating (feedback posted to the API names no service)."""
    text = httpx.get(metrics_url).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "chatbot_feedback_total":
                rating = sample.labels["rating"]
                totals[rating] = totals.get(rating, 0.0) + sample.value
    return totals


def test_widget_posts_thumbs_down_from_another_origin(database_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser_binaries()
    pages: dict[str, str] = {}
    with static_site(pages) as origin, running(database_url, cors_origins=origin, auth_token=TOKEN) as proc:
        url = base_url(proc)
        body, traces = turn_request(1, service="shop-bot")
        sent = httpx.post(f"{url}/v1/traces", content=body, headers={
            "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {TOKEN}"})
        assert sent.status_code == 200
        turn_id = f"turn-{traces[0]}"
        pages["/chat.html"] = CHAT_PAGE.format(turn_id=turn_id, long_id=LONG_ID, processor=url, token=TOKEN)
        pages["/down.html"] = UNREACHABLE_PAGE.format(processor=url, closed_port=free_port())
        host, port = proc.metrics_address
        metrics_url = f"http://{host}:{port}/metrics"
        assert _feedback_metric(metrics_url) == {}

        with chromium(900, 640) as driver:
            wait = WebDriverWait(driver, 30)
            driver.get(f"{origin}/chat.html")
            rated = wait.until(lambda d: d.find_element(By.ID, "rated").find_elements(By.TAG_NAME, "button"))
            assert [b.get_attribute("aria-label") for b in rated] == ["Good answer", "Bad answer"]
            rated[1].click()
            widget = driver.find_element(By.ID, "rated")
            wait.until(lambda d: widget.get_attribute("data-otel-chatbot-state") == "sent-down")
            assert "Thanks for your feedback!" in widget.text

            with psycopg.connect(database_url) as conn:
                rows = conn.execute("SELECT turn_id, rating, comment, origin FROM feedback").fetchall()
            assert rows == [(turn_id, "down", None, "api")]
            wait_until(lambda: _feedback_metric(metrics_url).get("down") == 1.0, "the feedback metric")
            assert _feedback_metric(metrics_url) == {"down": 1.0}

            comment = widget.find_element(By.TAG_NAME, "input")
            comment.send_keys("the parcel never came")

            broken = driver.find_element(By.ID, "broken")
            broken.find_elements(By.TAG_NAME, "button")[0].click()
            wait.until(lambda d: broken.get_attribute("data-otel-chatbot-state") == "error")
            alert = broken.find_element(By.CSS_SELECTOR, "[role=alert]").text
            assert alert.startswith("Feedback not sent (HTTP 400: turn_id: expected a non-empty string")
            assert all(b.is_enabled() for b in broken.find_elements(By.TAG_NAME, "button"))  # may retry
            _screenshot(driver, tmp_path, "widget.png")

            widget.find_element(By.XPATH, ".//button[text()='Send']").click()
            wait.until(lambda d: widget.get_attribute("data-otel-chatbot-state") == "commented")

            driver.get(f"{origin}/down.html")
            down = wait.until(lambda d: d.find_element(By.ID, "down").find_elements(By.TAG_NAME, "button"))
            down[1].click()
            failed = driver.find_element(By.ID, "down")
            wait.until(lambda d: failed.get_attribute("data-otel-chatbot-state") == "error")
            assert failed.find_element(By.CSS_SELECTOR, "[role=alert]").text == (
                "Feedback not sent (Failed to fetch)")
        with psycopg.connect(database_url) as conn:
            rows = conn.execute("SELECT turn_id, rating, comment, origin FROM feedback").fetchall()
        assert rows == [(turn_id, "down", "the parcel never came", "api")]
        # The comment did not change the rating: still one thumbs-down counted.
        assert _feedback_metric(metrics_url) == {"down": 1.0}


def test_reviewer_logs_in_and_stores_a_correction(database_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser_binaries()
    seed(database_url)
    with running(database_url, auth_token=TOKEN) as proc, chromium() as driver:
        url = base_url(proc)
        wait = WebDriverWait(driver, 30)
        driver.get(f"{url}/ui/turn/t-low")
        assert driver.current_url == f"{url}/ui/login?next=%2Fui%2Fturn%2Ft-low"
        _screenshot(driver, tmp_path, "login.png", publish=False)
        driver.find_element(By.NAME, "name").send_keys("Dana")
        driver.find_element(By.NAME, "secret").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: d.current_url == f"{url}/ui/turn/t-low")
        cookie = driver.get_cookie(COOKIE_NAME)
        assert cookie is not None and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"

        form = driver.find_element(By.ID, "review")
        form.find_element(By.CSS_SELECTOR, "input[name=rating][value=down]").click()
        form.find_element(By.NAME, "corrected_reply").send_keys(CORRECTION)
        form.find_element(By.NAME, "note").send_keys("answered opening hours instead of the parcel status")
        _fit_page(driver)
        _screenshot(driver, tmp_path, "conversation.png")
        form.find_element(By.CSS_SELECTOR, "button[value=next]").click()
        wait.until(lambda d: d.current_url == f"{url}/ui/turn/t-halluc?saved=1")
        assert driver.find_element(By.CSS_SELECTOR, "[role=status]").text == "Review saved."

        assert reviews(database_url) == [
            ("t-low", "Dana", "down", CORRECTION, "answered opening hours instead of the parcel status")]

        # `otel-chatbot export` puts the correction in place of the bot's reply in the training data.
        exported = subprocess.run(
            [sys.executable, "-m", "otel_chatbot.cli", "export", "--database-url", database_url,
             "--since", "1d", "--format", "openai-finetune", "--service", "shop-bot"],
            capture_output=True, text=True, timeout=120, check=False)
        assert exported.returncode == 0, exported.stderr
        lines = [json.loads(line) for line in exported.stdout.splitlines()]
        assert len(lines) == 1  # the one shop-bot session
        messages = [(m["role"], m["content"]) for m in lines[0]["messages"]]
        at = messages.index(("user", "It never arrived. Can you check again?"))
        assert messages[at + 1] == ("assistant", CORRECTION)
        assert all("opening" not in content for _role, content in messages)

        driver.set_window_size(1280, 900)
        driver.get(f"{url}/ui/")
        assert driver.find_element(By.ID, "progress").text == "1 / 5"
        _fit_page(driver)
        _screenshot(driver, tmp_path, "review-queue.png")
