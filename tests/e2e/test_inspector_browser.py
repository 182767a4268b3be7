"""The memory inspector in a real browser (headless Chromium from the system packages, driven by selenium) on the
local stack: a key pasted in, a user found, a memory's history opened, a memory edited (its UPDATE event shown),
the jobs, what chat would recall and the project's status seen, a user forgotten. The page breaks no rule of its
Content-Security-Policy and keeps the key in the tab only.

With REVERIE_SCREENSHOTS=docs (`make screenshots`), the main views are saved there as PNGs, for the README."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support import browser
from tests.support.projects import new_project
from tests.support.waiting import wait_for

REASON = browser.missing()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(REASON is not None, reason=f"browser tests skipped: {REASON}")]

WAIT_S = 20
JOB_TIMEOUT_S = 60


# ---------------------------------------------------------------- a project with something remembered


class Seeded:
    def __init__(self, base_url: str, key, http: httpx.Client):
        self.base_url, self.key, self.http = base_url, key, http

    def wait_job(self, job_id: str) -> dict:
        def final():
            answer = self.http.get(f"/v1/jobs/{job_id}")
            body = answer.json() if answer.status_code == 200 else {}
            return body if body.get("status") in ("done", "failed", "dead") else None
        return wait_for(final, timeout_s=JOB_TIMEOUT_S, interval_s=0.2)

    def chat(self, user: str, session: str, message: str) -> dict:
        answer = self.http.post("/v1/chat", json={"user_id": user, "session_id": session, "message": message})
        assert answer.status_code == 200, answer.text
        job = self.wait_job(answer.json()["job_id"])
        assert job["status"] == "done", job
        return job

    def memories(self, user: str, **query) -> list[dict]:
        answer = self.http.get("/v1/memories", params={"user_id": user, "limit": 100, **query})
        assert answer.status_code == 200, answer.text
        return answer.json()["memories"]


@pytest.fixture(scope="module")
def seeded(stack):
    """A project of its own (so the views show only what these tests made): ana, whose home moved from Porto to
    Berlin, with a rule, small talk that taught nothing, and a narrative; ben; and cleo, to be forgotten."""
    key = new_project(stack.clients.db, prefix="inspector")
    with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {key.key}"}, timeout=30) as http:
        seeded = Seeded(stack.base_url, key, http)
        seeded.chat("ana", "s1", "I live in Porto and I prefer short answers.")
        seeded.chat("ana", "s1", "My sister Rita is a nurse in Lisbon.")
        seeded.chat("ana", "s2", "Thanks, that's great!")
        seeded.chat("ana", "s2", "I moved to Berlin last month.")
        seeded.chat("ben", "s1", "I work as a carpenter and I love jazz.")
        seeded.chat("cleo", "s1", "I am allergic to peanuts.")
        regenerate = http.post("/v1/users/ana/narrative/regenerate")
        assert regenerate.status_code == 202, regenerate.text
        wait_for(lambda: http.get("/v1/users/ana/narrative").status_code == 200, timeout_s=JOB_TIMEOUT_S)
        yield seeded


@pytest.fixture(scope="module")
def page(seeded):
    """The browser, on the inspector, connected with the project's key."""
    with browser.chromium() as driver:
        driver.get(f"{seeded.base_url}/ui")
        type_into(driver, "key-input", seeded.key.key)
        click(driver, "connect-button")
        wait_test(driver, "user-row")
        yield driver


# ---------------------------------------------------------------- driving the page


def find(driver, test: str, within=None):
    from selenium.webdriver.common.by import By
    return (within or driver).find_elements(By.CSS_SELECTOR, f'[data-test="{test}"]')


def wait_test(driver, test: str, predicate=None):
    """The visible elements marked data-test=`test` (when `predicate` is given, once it holds for them)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        found = [e for e in find(d, test) if e.is_displayed()]
        return found if found and (predicate is None or predicate(found)) else False
    # An element the page re-rendered meanwhile is stale: look again.
    wait = WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(ready, message=f"no {test} on the page")


def click(driver, test: str) -> None:
    wait_test(driver, test)[0].click()


def type_into(driver, test: str, text: str, clear: bool = True) -> None:
    field = wait_test(driver, test)[0]
    if clear:
        field.clear()
    field.send_keys(text)


def go(driver, hash_route: str) -> None:
    driver.execute_script("window.location.hash = arguments[0]", hash_route)


def settle(driver) -> None:
    """Let the last fetches render (for a screenshot)."""
    time.sleep(0.3)


def shoot(driver, name: str, height: int | None = None) -> None:
    """Save the view as docs' inspector-<name>.png when screenshots are asked for, `height` pixels tall."""
    where = browser.screenshot_dir()
    if where is None:
        return
    width, usual = browser.WINDOW
    if height:
        driver.set_window_size(width, height)
    settle(driver)
    driver.execute_script("document.getElementById('toast').classList.remove('show')")
    time.sleep(0.3)  # the toast fades out
    driver.save_screenshot(str(where / f"inspector-{name}.png"))
    if height:
        driver.set_window_size(width, usual)


def texts(elements) -> list[str]:
    return [e.text for e in elements]


def csp_violations(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"] or "TrustedHTML" in entry["message"]
            or "Trusted Type" in entry["message"]]


# ---------------------------------------------------------------- the tests


def test_the_key_is_checked_and_kept_for_the_tab_only(seeded, stack):
    with browser.chromium() as driver:
        driver.get(f"{seeded.base_url}/ui")
        type_into(driver, "key-input", "rv_not_a_key")
        click(driver, "connect-button")
        assert "refused" in wait_test(driver, "error")[0].text
        assert driver.execute_script("return window.sessionStorage.length") == 0
        type_into(driver, "key-input", seeded.key.key)
        click(driver, "connect-button")
        wait_test(driver, "user-row")
        assert wait_test(driver, "project")[0].text == f"project {seeded.key.project_id}"
        stored = driver.execute_script("return [window.sessionStorage.length, window.localStorage.length,"
                                       " document.cookie]")
        assert stored == [1, 0, ""]
        click(driver, "disconnect")
        wait_test(driver, "connect")
        assert driver.execute_script("return window.sessionStorage.length") == 0
        assert csp_violations(driver) == []


def test_users_are_listed_with_their_counts_and_one_is_found_by_its_id(page):
    go(page, "#/")
    rows = wait_test(page, "user-row", lambda rows: len(rows) == 3)
    assert [row.text.split()[0] for row in rows] == ["ana", "ben", "cleo"]
    shoot(page, "users")
    type_into(page, "user-filter", "an")
    click(page, "find-user")
    rows = wait_test(page, "user-row", lambda rows: len(rows) == 1)
    assert rows[0].text.split()[0] == "ana"
    find(page, "user-link", rows[0])[0].click()
    assert wait_test(page, "user-title")[0].text == "ana"


def test_a_user_shows_the_narrative_with_its_citations_and_memories_by_tier_with_superseded_ones_greyed(page, seeded):
    go(page, "#/users/ana")
    narrative = wait_test(page, "narrative-text")[0].text
    assert narrative
    citations = wait_test(page, "citation")
    assert citations and all(c.get_attribute("href").split("#/memories/")[1] for c in citations)
    semantic = wait_test(page, "tier-semantic")[0]
    cards = find(page, "memory", semantic)
    superseded = [c for c in cards if "superseded" in c.get_attribute("class")]
    assert any("Porto" in c.text for c in superseded), [c.text for c in cards]
    assert any("Berlin" in c.text for c in cards if c not in superseded)
    assert find(page, "memory", wait_test(page, "tier-procedural")[0])  # the rule: short answers
    shoot(page, "user", height=1250)
    # A citation leads to the memory it cites.
    first = citations[0].get_attribute("href").split("#/memories/")[1]
    citations[0].click()
    wait_test(page, "history")
    assert page.current_url.endswith(f"#/memories/{first}")


def test_a_memorys_history_is_opened_and_an_edit_shows_as_an_update_event(page, seeded):
    [berlin] = [m for m in seeded.memories("ana", tier="semantic") if "Berlin" in m["text"]]
    go(page, "#/users/ana")
    card = wait_test(page, "memory", lambda cards: any(c.get_attribute("data-id") == berlin["id"] for c in cards))
    [card] = [c for c in card if c.get_attribute("data-id") == berlin["id"]]
    find(page, "open-memory", card)[0].click()
    events = wait_test(page, "event")
    assert [e.get_attribute("data-event") for e in events] == ["ADD"]
    assert berlin["text"] in wait_test(page, "memory-detail-text")[0].text

    click(page, "edit")
    type_into(page, "edit-text", "User lives in Berlin-Kreuzberg since October")
    click(page, "save-edit")
    events = wait_test(page, "event", lambda found: any(e.get_attribute("data-event") == "UPDATE" for e in found))
    [update] = [e for e in events if e.get_attribute("data-event") == "UPDATE"]
    assert berlin["text"] in update.text and "User lives in Berlin-Kreuzberg since October" in update.text
    assert wait_test(page, "memory-detail-text")[0].text == "User lives in Berlin-Kreuzberg since October"
    shoot(page, "memory-history")
    # The API agrees: the same memory, new words, an UPDATE keeping the old ones.
    history = seeded.http.get(f"/v1/memories/{berlin['id']}/history").json()["events"]
    assert [e["event"] for e in history][-1] == "UPDATE" and history[-1]["old_text"] == berlin["text"]
    assert seeded.http.get(f"/v1/memories/{berlin['id']}").json()["text"].endswith("since October")


def test_a_memory_is_deleted_after_a_confirmation_and_its_history_keeps_the_delete(page, seeded):
    [jazz] = [m for m in seeded.memories("ben") if "jazz" in m["text"].lower() and m["tier"] == "semantic"][:1]
    go(page, f"#/memories/{jazz['id']}")
    click(page, "delete")
    click(page, "delete-confirm")
    wait_test(page, "user-title", lambda found: found[0].text == "ben")
    cards = wait_test(page, "memory")
    assert jazz["id"] not in [c.get_attribute("data-id") for c in cards]
    go(page, f"#/memories/{jazz['id']}")
    events = wait_test(page, "event", lambda found: found[-1].get_attribute("data-event") == "DELETE")
    assert jazz["text"] not in " ".join(e.text for e in events)  # its words are gone from its history
    assert seeded.http.get(f"/v1/memories/{jazz['id']}").status_code == 404


def test_jobs_show_each_tiers_outcome_and_why_a_turn_taught_nothing(page, seeded):
    go(page, "#/users/ana/jobs")
    rows = wait_test(page, "job-row", lambda rows: len(rows) >= 5)
    assert len(rows) == 5  # four chat turns and the narrative
    assert all(find(page, "badge", row)[0].text == "done" for row in rows)
    assert len([row for row in rows if find(page, "outcome-narrative", row)]) == 1
    small_talk = [row for row in rows if find(page, "outcome-semantic", row)
                  and find(page, "outcome-semantic", row)[0].text.startswith("empty")]
    assert small_talk and "\n" in find(page, "outcome-semantic", small_talk[0])[0].text  # with its reason
    assert "Nothing pending" in wait_test(page, "pending")[0].text
    shoot(page, "jobs", height=1000)


def test_what_chat_would_recall_for_a_message_is_shown_within_its_token_budget(page):
    go(page, "#/users/ana/recall")
    type_into(page, "recall-message", "Where does my sister live?")
    type_into(page, "recall-budget", "800")
    click(page, "recall")
    tokens = wait_test(page, "context-tokens")[0].text
    used = int(tokens.split()[0])
    assert 0 < used <= 800 and tokens.endswith("of 800 tokens used")
    assert "sister rita" in wait_test(page, "context")[0].text.lower()
    shoot(page, "recall", height=1100)


def test_search_as_of_sees_the_home_before_the_move(page, seeded):
    [porto] = [m for m in seeded.memories("ana", tier="semantic", include_superseded="true") if "Porto" in m["text"]]
    before_the_move = datetime.fromisoformat(porto["superseded_at"]).astimezone(UTC) - timedelta(milliseconds=1)
    go(page, "#/users/ana/search")
    type_into(page, "search-query", "where does the user live")
    for tier in ("episodic", "procedural"):
        click(page, f"search-tier-{tier}")
    click(page, "search")
    now = texts(wait_test(page, "search-hit"))
    assert any("Berlin" in t for t in now) and not any("Porto" in t for t in now)

    def as_of(moment: datetime) -> list[str]:
        """The hits as of `moment` (UTC), typed into the field as its local date and time."""
        field = wait_test(page, "search-as-of")[0]
        page.execute_script("arguments[0].value = arguments[1]", field, moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3])
        click(page, "search")
        sent = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z").lower()
        wait_test(page, "search-count", lambda found: f"as of {sent}" in found[0].text.lower())
        return texts(find(page, "search-hit"))

    then = as_of(before_the_move)
    assert any("Porto" in t for t in then) and not any("Berlin" in t for t in then)
    shoot(page, "search")
    assert as_of(datetime(2000, 1, 1, tzinfo=UTC)) == []


def test_the_projects_status_is_shown(page):
    go(page, "#/status")
    status = wait_test(page, "status")[0]
    assert "OUTBOX" in status.text and "HELD IN REFLECTION WINDOWS" in status.text  # h3s are upper case
    assert wait_test(page, "outbox-jobs")[0].text == "0"
    shoot(page, "status")


def test_a_user_is_forgotten_after_a_confirmation_that_names_them(page, seeded):
    go(page, "#/users/cleo")
    click(page, "forget")
    assert wait_test(page, "forget-title")[0].text == "Forget cleo?"
    confirm = wait_test(page, "forget-confirm")[0]
    type_into(page, "forget-confirm-input", "ana")
    assert not confirm.is_enabled()
    type_into(page, "forget-confirm-input", "cleo")
    assert confirm.is_enabled()
    confirm.click()
    rows = wait_test(page, "user-row", lambda rows: [r.text.split()[0] for r in rows] == ["ana", "ben"])
    assert len(rows) == 2
    assert "forgotten" in wait_test(page, "toast")[0].text
    assert seeded.http.get("/v1/users", params={"prefix": "cleo"}).json()["users"] == []
    assert seeded.memories("cleo", include_superseded="true") == []
    assert csp_violations(page) == []
