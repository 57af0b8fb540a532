"""The "Lithops job" tab in real Airflow, started by `make airflow`'s own script, and seen
in a real browser (Debian's Chromium driven by Playwright).

One Airflow for the module: ``scripts/airflow.py`` (what ``make airflow`` runs) with the
example DAGs and the e2e DAGs, and an auth manager with per-DAG permissions
(:mod:`per_dag_auth`). It is not the cluster of ``test_real_airflow.py``: that one lets
every request in as admin (no login, no per-DAG rights), which is what its tests need and
the opposite of what these need. The last test stops it with SIGINT, as Ctrl-C would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from pywren_deferrable.embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAP_DAG, MAP_TASK = "example_pywren_map", "map_task"
FAIL_DAG, FAIL_TASK = "e2e_fail_map", "fail_map"
SLEEP_DAG, SLEEP_TASK = "e2e_sleep_map", "sleep_map"
MAP_REDUCE_DAG = "example_pywren_map_reduce"
# alice may read the two DAGs whose tabs she opens; bob only a DAG with no run.
ACL = {"alice": [MAP_DAG, FAIL_DAG, SLEEP_DAG], "bob": ["example_pywren_call_async"]}
PASSWORDS = {"admin": "admin-pw-e2e", "alice": "alice-pw-e2e", "bob": "bob-pw-e2e"}
RUN_TIMEOUT = 240.0


@dataclass
class AirflowUI:
    """`make airflow` running: its process, URL and home."""

    process: subprocess.Popen[str]
    url: str
    home: Path
    output: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, user: str) -> str:
        if user not in self.tokens:
            response = httpx.post(
                f"{self.url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=120
            )
            response.raise_for_status()
            self.tokens[user] = response.json()["access_token"]
        return self.tokens[user]

    def get(self, path: str, user: str | None = "admin", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=120, **kwargs)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        response = httpx.post(
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": conf or {}},
            headers={"Authorization": f"Bearer {self.token('admin')}"},
            timeout=120,
        )
        response.raise_for_status()
        return str(response.json()["dag_run_id"])

    def ti_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        return self.get(path).json().get("state")

    def wait_ti(self, dag_id: str, run_id: str, task_id: str, states: set[str]) -> str:
        give_up = time.monotonic() + RUN_TIMEOUT
        state = None
        while time.monotonic() < give_up:
            assert self.process.poll() is None, "make airflow exited:\n" + "".join(self.output[-40:])
            state = self.ti_state(dag_id, run_id, task_id)
            if state in states:
                return state
            time.sleep(1)
        raise AssertionError(f"{dag_id}/{task_id} still {state} after {RUN_TIMEOUT}s, wanted {states}")

    def tab_params(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str]:
        return {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": "{MAP_INDEX}"}

    def settled_job(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """The tab's JSON once everything is read (an answer may come before: the api-server
        answers within its budget with what it has read so far, as the page does)."""
        give_up = time.monotonic() + 120
        while True:
            response = self.get("/pywren-deferrable/api/job", params=self.tab_params(dag_id, run_id, task_id))
            assert response.status_code == 200, response.text
            data = dict(response.json())
            if data["final"] or time.monotonic() > give_up:
                return data
            time.sleep(1)


def _pump(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line)


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowUI]:
    home = tmp_path_factory.mktemp("make-airflow")
    (home / "simple_auth_manager_passwords.json").write_text(json.dumps(PASSWORDS))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))},
        "AIRFLOW__CORE__AUTH_MANAGER": "per_dag_auth.PerDagAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,alice:viewer,bob:viewer",
        "AIRFLOW__API__WORKERS": "1",
        "PYWREN_TEST_DAG_ACL": json.dumps(ACL),
        # per_dag_auth for the api-server; the e2e DAGs' payloads for every component.
        "PYTHONPATH": os.pathsep.join([str(E2E), str(ROOT / "tests")]),
    }
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "airflow.py"),
            "--port",
            str(free_port()),
            "--home",
            str(home),
            "--dags",
            str(ROOT / "example_dags"),
            "--dags",
            str(E2E / "dags"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    output: list[str] = []
    threading.Thread(target=_pump, args=(process.stdout, output), daemon=True).start()
    try:
        url = None
        give_up = time.monotonic() + 360
        while url is None and time.monotonic() < give_up:
            assert process.poll() is None, "make airflow exited:\n" + "".join(output[-60:])
            found = [m for line in output if (m := re.match(r"Airflow UI: (\S+)", line))]
            url = found[0].group(1) if found else None
            time.sleep(0.5)
        assert url, "make airflow printed no URL:\n" + "".join(output[-60:])
        assert any(line.startswith("Login: admin / admin-pw-e2e") for line in output), "".join(output)
        ui = AirflowUI(process, url, home, output)
        _wait_dags(ui, [MAP_DAG, FAIL_DAG, SLEEP_DAG, MAP_REDUCE_DAG])
        print(f"\nmake airflow ready in {time.monotonic() - started:.1f}s at {url}")
        yield ui
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_dags(ui: AirflowUI, dag_ids: list[str]) -> None:
    give_up = time.monotonic() + 180
    while time.monotonic() < give_up:
        known = {d["dag_id"] for d in ui.get("/api/v2/dags", params={"limit": 100}).json()["dags"]}
        if set(dag_ids) <= known:
            return
        time.sleep(1)
    raise AssertionError(f"DAGs {dag_ids} not parsed; import errors: {ui.get('/api/v2/importErrors').text}")


@pytest.fixture(scope="module")
def finished_runs(airflow_ui: AirflowUI) -> dict[str, str]:
    """A successful and a failed task of the example map and the failing map."""
    runs = {MAP_DAG: airflow_ui.trigger(MAP_DAG), FAIL_DAG: airflow_ui.trigger(FAIL_DAG)}
    assert airflow_ui.wait_ti(MAP_DAG, runs[MAP_DAG], MAP_TASK, {"success", "failed"}) == "success"
    assert airflow_ui.wait_ti(FAIL_DAG, runs[FAIL_DAG], FAIL_TASK, {"success", "failed"}) == "failed"
    return runs


def test_the_tab_is_registered_by_the_provider(airflow_ui: AirflowUI) -> None:
    plugins = airflow_ui.get("/api/v2/plugins").json()["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "pywren_deferrable_job_view"]
    (view,) = ours["external_views"]
    assert (view["name"], view["destination"], view["url_route"]) == (
        "Lithops job",
        "task_instance",
        "lithops_job",
    )
    assert "{DAG_ID}" in view["href"] and "{TASK_ID}" in view["href"]
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/pywren-deferrable"]
    assert airflow_ui.get("/api/v2/plugins/importErrors").json()["import_errors"] == []


def test_finished_and_failed_jobs_as_json(airflow_ui: AirflowUI, finished_runs: dict[str, str]) -> None:
    ok = airflow_ui.settled_job(MAP_DAG, finished_runs[MAP_DAG], MAP_TASK)
    assert ok["final"] is True
    (job,) = ok["jobs"]
    assert (job["total"], job["done"], job["failed"], job["running"], job["pending"]) == (3, 3, 0, 0, 0)
    assert job["compute_backend"] == "localhost" and job["runtime_memory_mb"] == 256
    assert job["cost"]["amount"] == 0.0 and job["gb_seconds"] > 0
    assert all(c["duration"] is not None and c["activation"] for c in job["calls"])
    # Each status was read once: later answers read nothing.
    assert job["status_reads"] == 3
    assert airflow_ui.settled_job(MAP_DAG, finished_runs[MAP_DAG], MAP_TASK)["jobs"][0]["status_reads"] == 3

    bad = airflow_ui.settled_job(FAIL_DAG, finished_runs[FAIL_DAG], FAIL_TASK)
    (failed,) = bad["jobs"]
    assert (failed["total"], failed["done"], failed["failed"]) == (4, 3, 1)
    first = failed["calls"][0]
    assert (first["call"], first["state"]) == ("M000/00002", "failed")
    assert "ValueError: boom on 3" in first["error"] and "Traceback" in first["traceback"]


def test_a_running_job_is_shown_live(airflow_ui: AirflowUI) -> None:
    run_id = airflow_ui.trigger(SLEEP_DAG, {"seconds": 12})
    airflow_ui.wait_ti(SLEEP_DAG, run_id, SLEEP_TASK, {"deferred"})
    params = airflow_ui.tab_params(SLEEP_DAG, run_id, SLEEP_TASK)
    give_up = time.monotonic() + 60
    while True:
        data = airflow_ui.get("/pywren-deferrable/api/job", params=params).json()
        (job,) = data["jobs"]
        if job["running"] >= 1 or time.monotonic() > give_up:
            break
        time.sleep(1)
    assert data["final"] is False and job["total"] == 4 and job["done"] == 0 and job["running"] >= 1
    assert job["running"] + job["pending"] == 4
    assert airflow_ui.wait_ti(SLEEP_DAG, run_id, SLEEP_TASK, {"success", "failed"}) == "success"
    (after,) = airflow_ui.settled_job(SLEEP_DAG, run_id, SLEEP_TASK)["jobs"]
    assert (after["done"], after["running"], after["pending"]) == (4, 0, 0)


def test_map_reduce_jobs_and_cleaned_ones(airflow_ui: AirflowUI) -> None:
    """A map-reduce shows its map and reduce jobs; a task whose jobs were cleaned
    (clean_data=True) says so and stops refreshing instead of showing pending calls."""
    run_id = airflow_ui.trigger(MAP_REDUCE_DAG)
    for task_id in ("mapreduce_task", "mapreduce_wait_local_task"):
        assert airflow_ui.wait_ti(MAP_REDUCE_DAG, run_id, task_id, {"success", "failed"}) == "success"
    both = airflow_ui.settled_job(MAP_REDUCE_DAG, run_id, "mapreduce_task")
    assert both["final"] is True
    assert [(j["job_id"], j["total"], j["done"]) for j in both["jobs"]] == [("M000", 3, 3), ("R000", 1, 1)]
    cleaned = airflow_ui.settled_job(MAP_REDUCE_DAG, run_id, "mapreduce_wait_local_task")
    assert cleaned["final"] is True
    # reducer_wait_local: the map job, then the reducer's job, each recorded at submission.
    assert len(cleaned["jobs"]) == 2 and all(j["gone"] and j["done"] == 0 for j in cleaned["jobs"])


@pytest.mark.parametrize("path", ["/pywren-deferrable/job", "/pywren-deferrable/api/job"])
def test_the_auth_manager_decides(airflow_ui: AirflowUI, finished_runs: dict[str, str], path: str) -> None:
    params = airflow_ui.tab_params(MAP_DAG, finished_runs[MAP_DAG], MAP_TASK)
    # No login at all: refused.
    anonymous = airflow_ui.get(path, user=None, params=params)
    assert anonymous.status_code == 401, anonymous.text
    # A token that is not the api-server's: refused.
    forged = httpx.get(
        f"{airflow_ui.url}{path}", params=params, headers={"Authorization": "Bearer not.a.jwt"}, timeout=120
    )
    assert forged.status_code == 403 and "executor" not in forged.text
    forged_cookie = httpx.get(
        f"{airflow_ui.url}{path}", params=params, cookies={"_token": "x.y.z"}, timeout=120
    )
    assert forged_cookie.status_code == 403
    # bob may read another DAG only: 403 for this one...
    assert airflow_ui.get(path, user="bob", params=params).status_code == 403
    # ...while the same request for a DAG he may read gets past auth (no such run: 404).
    own = airflow_ui.tab_params("example_pywren_call_async", finished_runs[MAP_DAG], "call_async_task")
    assert airflow_ui.get(path, user="bob", params=own).status_code == 404
    # alice may read it.
    allowed = airflow_ui.get(path, user="alice", params=params)
    assert allowed.status_code == 200
    # No credential reaches the browser: neither the Connection's keys nor its endpoint.
    endpoint = re.search(r"S3 endpoint (\S+)", "".join(airflow_ui.output))
    assert endpoint is not None
    for secret in (EMBEDDED_ACCESS_KEY, EMBEDDED_SECRET_KEY, endpoint.group(1)):
        assert secret not in allowed.text


def _chromium_or_fail() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    message = f"Chromium is not installed at {CHROMIUM} (`make chromium` installs Debian's package)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def test_the_tab_in_a_browser(airflow_ui: AirflowUI, finished_runs: dict[str, str]) -> None:
    """Log in, open a finished and a failing task's tab, see the plot and a traceback."""
    from playwright.sync_api import sync_playwright

    chromium = _chromium_or_fail()
    shots = airflow_ui.home / "screenshots"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = _logged_in_page(browser, airflow_ui)
            for dag_id, task_id, name in ((MAP_DAG, MAP_TASK, "finished"), (FAIL_DAG, FAIL_TASK, "failing")):
                run_id = finished_runs[dag_id]
                page.goto(
                    f"{airflow_ui.url}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/plugin/lithops_job",
                    wait_until="domcontentloaded",
                )
                frame = page.frame_locator("iframe[title='Lithops job']")
                frame.locator("svg.timeline").wait_for(timeout=60_000)
                assert frame.locator("svg.histogram").count() == 1
                if name == "failing":
                    summary = frame.locator("details.tb summary").first
                    assert "ValueError: boom on 3" in summary.inner_text()
                    summary.click()
                    traceback = frame.locator("details.tb pre").first
                    traceback.wait_for(state="visible")
                    assert "Traceback (most recent call last)" in traceback.inner_text()
                    assert "ValueError: boom on 3" in traceback.inner_text()
                else:
                    assert frame.locator("path.bars-cold, path.bars-warm").count() >= 1
                    assert "3 done" in frame.locator("p.counts").inner_text()
                shot = shots / f"lithops-job-tab-{name}.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the {name} task's tab: {shot}")
        finally:
            browser.close()
    docs_copy = os.environ.get("PYWREN_DEFERRABLE_SCREENSHOT_DIR")
    if docs_copy:
        for shot in shots.glob("*.png"):
            shutil.copy(shot, docs_copy)


def _logged_in_page(browser: Any, ui: AirflowUI) -> Any:
    """A page of ``browser`` logged in to the UI as admin, through the login form."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{ui.url}/", wait_until="domcontentloaded")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORDS["admin"])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"), timeout=60_000)
    return page


def test_the_tab_follows_a_running_job_in_a_browser(airflow_ui: AirflowUI) -> None:
    """The tab of a running job updates itself (no reload) until every call is done."""
    from playwright.sync_api import expect, sync_playwright

    chromium = _chromium_or_fail()
    run_id = airflow_ui.trigger(SLEEP_DAG, {"seconds": 15})
    airflow_ui.wait_ti(SLEEP_DAG, run_id, SLEEP_TASK, {"deferred"})
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = _logged_in_page(browser, airflow_ui)
            page.goto(
                f"{airflow_ui.url}/dags/{SLEEP_DAG}/runs/{run_id}/tasks/{SLEEP_TASK}/plugin/lithops_job",
                wait_until="domcontentloaded",
            )
            frame = page.frame_locator("iframe[title='Lithops job']")
            content = frame.locator("#content")
            content.wait_for(timeout=60_000)
            assert content.get_attribute("data-final") == "false"  # the job is still running
            assert "4 done" not in frame.locator("p.counts").inner_text()
            # The page fetches itself again every few seconds: the counts change in place.
            expect(frame.locator("p.counts")).to_contain_text("4 done", timeout=120_000)
            expect(content).to_have_attribute("data-final", "true", timeout=120_000)
        finally:
            browser.close()


def test_ctrl_c_stops_everything(airflow_ui: AirflowUI) -> None:
    """Last: SIGINT (Ctrl-C) stops every component and the S3 endpoint; exit status 0."""
    script = psutil.Process(airflow_ui.process.pid)
    children = script.children(recursive=True)
    # Components run in sessions of their own: find them by their AIRFLOW_HOME.
    components = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            if (proc.info.get("environ") or {}).get("AIRFLOW_HOME") == str(airflow_ui.home):
                components.append(proc)
        except psutil.Error:
            continue
    assert len(components) >= 4
    airflow_ui.process.send_signal(signal.SIGINT)
    assert airflow_ui.process.wait(90) == 0, "".join(airflow_ui.output[-30:])
    _gone, alive = psutil.wait_procs([*children, *components], timeout=10)
    assert not alive, [p.info for p in alive]
    assert any("stopping Airflow" in line for line in airflow_ui.output)
    assert airflow_ui.output[-1].strip() == "Stopped."
