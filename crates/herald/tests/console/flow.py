"""A person's whole campaign through Herald's console, in headless Chromium (Selenium).

Run by crates/herald/tests/console.rs against `herald serve` and the simulator:

    flow.py --url http://127.0.0.1:PORT --key KEY --csv recipients.csv --shots DIR

Signs in (a wrong key first), creates a campaign (a broken message first: the live check
must name the field), uploads the CSV (the preview first), starts it, watches it complete,
downloads the failures, checks the CSRF guard, the back button, a narrow screen, filters,
and signs out. Saves a screenshot of each page in DIR. Prints one JSON line with what it
saw; exits non-zero at the first thing that is not as it should be.
"""

import argparse
import base64
import datetime
import json
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--shots", required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--driver", default="/usr/bin/chromedriver")
    p.add_argument("--timeout", type=float, default=180)
    a = p.parse_args()

    opts = webdriver.ChromeOptions()
    opts.binary_location = a.chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(a.driver), options=opts)
    seen = {}
    try:
        run(d, a, seen)
    except Exception:
        # Where the browser was, for the failure's report.
        try:
            body = d.execute_script("return document.body ? document.body.innerText : ''")
            print(f"seen so far: {json.dumps(seen)}\nat {d.current_url}:\n{(body or '')[:3000]}",
                  file=sys.stderr)
        except Exception as e:  # the browser itself may be what failed
            print(f"(the page could not be read: {e})", file=sys.stderr)
        raise
    finally:
        d.quit()
    print(json.dumps(seen))


def run(d, a, seen):
    # Generous: a loaded machine makes the browser slow, never wrong.
    wait = WebDriverWait(d, 90)
    long_wait = WebDriverWait(d, a.timeout, poll_frequency=0.5)

    def shot(name):
        """The whole page, not only the window."""
        size = d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        png = d.execute_cdp_cmd("Page.captureScreenshot",
                                {"format": "png", "captureBeyondViewport": True, "clip": clip})
        with open(f"{a.shots}/{name}.png", "wb") as f:
            f.write(base64.b64decode(png["data"]))

    def text(css):
        """An element's text, read in one step: the live part is swapped in every second,
        so an element found first and read after may be gone."""
        t = d.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null", css)
        assert t is not None, f"no {css} on {d.current_url}"
        return t.strip()

    def click(css):
        """Clicks an element that may be in the live part: one found just before the part
        is swapped is gone by the click (which then never happened), so it is found again."""
        WebDriverWait(d, 90, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda drv: drv.find_element(By.CSS_SELECTOR, css).click() or True)

    def fetch(method, path, csrf=True):
        """A same-origin request from the page, with the session cookie."""
        return d.execute_async_script(
            """
            const [method, path, csrf, done] = arguments;
            const headers = {};
            if (csrf) headers["X-Herald-CSRF"] = document.querySelector('meta[name="csrf"]').content;
            fetch(path, {method, headers, credentials: "same-origin"})
              .then(async r => done([r.status, await r.text()]))
              .catch(e => done([0, String(e)]));
            """,
            method, path, csrf)

    # Signed out, every page leads to sign-in.
    d.get(a.url + "/")
    wait.until(EC.url_contains("/sign-in"))
    shot("sign-in")
    key = d.find_element(By.ID, "key")
    key.send_keys("not-the-key")
    key.submit()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".error"), "not the API key"))
    d.find_element(By.ID, "key").send_keys(a.key)
    d.find_element(By.ID, "key").submit()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "h1")))
    assert text("h1") == "Campaigns", text("h1")
    cookie = d.get_cookie("herald_session")
    assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Strict", cookie
    seen["signed_in"] = True

    # A new campaign: a broken message is named by the live check, then a good one.
    d.find_element(By.LINK_TEXT, "New campaign").click()
    wait.until(EC.presence_of_element_located((By.ID, "new-campaign")))
    d.find_element(By.ID, "name").send_keys("console spring promo")
    message = d.find_element(By.ID, "message")
    good = message.get_attribute("value")
    # The account's approved templates: choosing one writes its message, a placeholder per
    # body parameter.
    wait.until(EC.visibility_of_element_located((By.ID, "template")))
    options = [o.text for o in d.find_elements(By.CSS_SELECTOR, "#template option")]
    seen["templates"] = options[1:]
    d.find_element(By.ID, "template").send_keys("order_update")
    wait.until(EC.text_to_be_present_in_element((By.ID, "check"), "column_1"))
    assert "order_update" in message.get_attribute("value")
    message.clear()
    message.send_keys('{"type": "template", "template": {"name": "order_update"}}')
    wait.until(EC.text_to_be_present_in_element((By.ID, "check"), "message: template: missing field `language`"))
    seen["live_check_error"] = text("#check")
    message.clear()
    d.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}))", message, good)
    d.find_element(By.ID, "mps").send_keys("40")
    d.find_element(By.ID, "default_region").send_keys("US")
    # A send window: a zone Herald does not know is named by the live check; then the four
    # hours around now in UTC, so the campaign can run to its end.
    def set_value(element_id, value):
        d.execute_script(
            "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
            " e.dispatchEvent(new Event('input', {bubbles: true}))", element_id, value)
    now = datetime.datetime.now(datetime.timezone.utc)
    window = [(now + datetime.timedelta(hours=h)).strftime("%H:%M") for h in (-2, 2)]
    set_value("window_start", window[0])
    set_value("window_end", window[1])
    set_value("window_zone", "Mars/Olympus")
    wait.until(EC.text_to_be_present_in_element((By.ID, "check"), "send_window.time_zone"))
    seen["window_check_error"] = text("#check")
    set_value("window_zone", "UTC")
    wait.until(EC.text_to_be_present_in_element((By.ID, "check"), "Valid"))
    assert "first_name" in text("#check"), text("#check")
    shot("new-campaign")
    d.find_element(By.CSS_SELECTOR, "#new-campaign button[type=submit]").click()
    # A campaign id, not the form's own /campaigns/new (a slow create leaves the browser there).
    wait.until(EC.url_matches(r"/campaigns/[0-9a-z]{16}$"))
    campaign = d.current_url.rsplit("/", 1)[1]
    seen["campaign"] = campaign

    # The upload: a preview of how Herald reads the file, then the file with progress. The
    # file is Windows-1252, as Excel's CSV is in much of the world: its character set is named.
    Select(d.find_element(By.ID, "charset")).select_by_value("windows-1252")
    d.find_element(By.ID, "csv").send_keys(a.csv)
    wait.until(EC.text_to_be_present_in_element((By.ID, "preview"), "Phone column"))
    preview = text("#preview")
    assert "First recipients" in preview and "+1" in preview, preview
    assert "Zoë" in preview, preview
    seen["preview_rejects"] = "would be rejected" in preview
    shot("preview")
    d.find_element(By.ID, "upload-go").click()
    wait.until(EC.presence_of_element_located((By.ID, "upload-summary")))
    seen["upload"] = text("#upload-summary")

    # Cookie-authenticated changes need the page's CSRF token.
    status, body = fetch("POST", f"/v1/campaigns/{campaign}/start", csrf=False)
    assert status == 403 and "X-Herald-CSRF" in body, (status, body)

    # Start it, with the confirmation, and watch it to the end.
    click("button[data-action=start]")
    WebDriverWait(d, 10).until(EC.alert_is_present())
    d.switch_to.alert.accept()
    long_wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#live .badge"), "completed"))
    time.sleep(1.5)  # one more refresh for the chart
    seen["accepted"] = int(text("#n-accepted"))
    seen["window"] = text("#live .statusline")
    seen["waiting_for_window"] = int(text("#n-window"))
    seen["failed"] = int(text("#n-failed"))
    seen["chart_points"] = d.execute_script(
        "const p = document.querySelector('#chart polyline'); return p ? p.getAttribute('points').split(' ').length : 0")
    seen["errors_table"] = bool(d.find_elements(By.ID, "errors-h"))
    shot("campaign")

    # The failures report, as the download link gets it.
    link = d.find_element(By.PARTIAL_LINK_TEXT, "Download failures")
    status, csv = fetch("GET", link.get_attribute("href"))
    assert status == 200, (status, csv)
    seen["failures_rows"] = len(csv.strip().splitlines()) - 1

    # A follow-up to those who did not read it, from the campaign page.
    d.find_element(By.ID, "audience").send_keys("Delivered, not read")
    d.find_element(By.CSS_SELECTOR, "#follow-up button[type=submit]").click()
    wait.until(lambda drv: drv.current_url.rstrip("/").rsplit("/", 1)[1] not in (campaign,))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#live .badge")))
    seen["follow_up"] = d.current_url.rsplit("/", 1)[1]
    seen["follow_up_pending"] = int(text("#n-pending"))
    shot("follow-up")
    # Not wanted after all: cancelled, then deleted, each with its confirmation.
    click("button[data-action=cancel]")
    WebDriverWait(d, 10).until(EC.alert_is_present())
    d.switch_to.alert.accept()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#live .badge"), "cancelled"))
    click("button[data-delete]")
    WebDriverWait(d, 10).until(EC.alert_is_present())
    d.switch_to.alert.accept()
    wait.until(lambda drv: drv.current_url.rstrip("/") == a.url.rstrip("/"))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "main")))
    seen["follow_up_deleted"] = seen["follow_up"] not in text("main")
    status, _ = fetch("GET", f"/v1/campaigns/{seen['follow_up']}")
    seen["follow_up_status_after_delete"] = status
    d.get(f"{a.url}/campaigns/{campaign}")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#live .badge")))

    # A narrow screen: nothing wider than the window.
    d.set_window_size(390, 844)
    time.sleep(0.5)
    overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the campaign page is {overflow}px wider than a narrow screen"
    shot("campaign-narrow")
    d.set_window_size(1280, 1000)

    # Back to the list with the back button; the filter finds it.
    d.get(a.url + "/?status=completed")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.campaigns")))
    assert campaign in text("table.campaigns")
    d.find_element(By.PARTIAL_LINK_TEXT, "console spring promo").click()
    wait.until(EC.url_contains(campaign))
    d.back()
    wait.until(EC.url_contains("status=completed"))
    assert campaign in text("table.campaigns")
    d.get(a.url + "/?status=running")
    assert campaign not in text("main")
    d.get(a.url + "/")
    shot("campaigns")

    # Sign out: the browser holds no session any more.
    d.find_element(By.CSS_SELECTOR, "header form button").click()
    wait.until(EC.url_contains("/sign-in"))
    d.get(a.url + "/campaigns/" + campaign)
    wait.until(EC.url_contains("/sign-in"))
    seen["signed_out"] = True


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one clear line for the Rust test's assertion
        print(f"console flow failed: {type(e).__name__}: {e}", file=sys.stderr)
        raise
