"""Every dashboard page in a real browser over a simulated week: it loads cleanly, loads nothing from
elsewhere, its charts paint, and (with BEDSIDE_SCREENSHOTS=1) its screenshots go to docs/screenshots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.browserutil import (
    CHROMEDRIVER,
    PHONE,
    WebServer,
    choose_theme,
    chrome_options,
    chrome_service,
    foreign_urls,
    full_page_png,
    read_problems,
    set_viewport,
    wait_for,
)

# (name, path or None for "the newest night", id of the page's <main>)
PAGES = [
    ("tonight", "/", "tonight"),
    ("nights", "/nights", "nights"),
    ("night", None, "night-page"),
    ("trends", "/trends", "trends"),
    ("checkin", "/checkin", "checkin"),
    ("status", "/status", "status-page"),
    ("export", "/export", "export"),
]

LIVE_SHOTS = {"tonight", "status"}
"""Pages whose screenshots test_live.py takes while the daemon runs."""

NIGHT_CHARTS = ("activity", "sleep", "events", "heart", "breath")

# Hides what a chart draws from data, leaving its frame (hour ticks, labels): the pixels that
# change are the drawn content.
HIDE_DATA_JS = """
const svg = arguments[0], hide = arguments[1];
for (const el of svg.querySelectorAll(':scope > :not(.tick):not(.tick-label):not(.row-label)')) {
  el.style.visibility = hide ? 'hidden' : '';
}
"""

# Decodes two PNG screenshots in the page (data: images are allowed by the CSP) and counts the
# pixels that differ between them.
PIXEL_DIFF_JS = """
const [a, b, done] = arguments;
function load(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error('cannot decode screenshot'));
    img.src = 'data:image/png;base64,' + src;
  });
}
function pixels(img, w, h) {
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, w, h).data;
}
Promise.all([load(a), load(b)]).then(([ia, ib]) => {
  const w = Math.min(ia.width, ib.width), h = Math.min(ia.height, ib.height);
  const pa = pixels(ia, w, h), pb = pixels(ib, w, h);
  let changed = 0;
  for (let i = 0; i < pa.length; i += 4) {
    if (Math.abs(pa[i] - pb[i]) + Math.abs(pa[i + 1] - pb[i + 1]) + Math.abs(pa[i + 2] - pb[i + 2]) > 30) {
      changed++;
    }
  }
  done({changed: changed, total: w * h});
}).catch((e) => done({error: String(e)}));
"""


def page_url(server: WebServer, path: str | None, week: tuple[Path, list[str]]) -> str:
    """``path`` on ``server``; for None, the newest night with its latest limb movement chosen."""
    if path is not None:
        return server.url + path
    db, night_ids = week
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (event_id,) = conn.execute(
            "SELECT e.id FROM events e JOIN snippets s ON s.event_id = e.id WHERE e.night_id = ? "
            "AND e.event_type = 'limb_movement' ORDER BY e.start_at DESC LIMIT 1",
            (night_ids[-1],),
        ).fetchone()
    finally:
        conn.close()
    return f"{server.url}/night/{night_ids[-1]}?event={event_id}"


def open_page(driver: webdriver.Chrome, url: str, main_id: str) -> WebElement:
    """Load ``url`` and wait for its ``<main id=main_id>`` and for the document to be complete."""
    driver.get(url)
    main = wait_for(lambda: driver.find_element(By.ID, main_id), what=f"<main id={main_id}> on {url}")
    wait_for(lambda: driver.execute_script("return document.readyState") == "complete", what="page complete")
    return main


def painted_pixels(driver: webdriver.Chrome, svg: WebElement) -> dict[str, int]:
    """How many of the chart's on-screen pixels its data marks paint (screenshot with and without)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", svg)
    with_data = svg.screenshot_as_base64
    driver.execute_script(HIDE_DATA_JS, svg, True)
    try:
        frame_only = svg.screenshot_as_base64
    finally:
        driver.execute_script(HIDE_DATA_JS, svg, False)
    result = driver.execute_async_script(PIXEL_DIFF_JS, with_data, frame_only)
    assert "error" not in result, result
    return {"changed": int(result["changed"]), "total": int(result["total"])}


def assert_chart_drawn(driver: webdriver.Chrome, svg: WebElement, min_pixels: int = 100) -> None:
    name = svg.get_attribute("data-chart")
    assert int(svg.get_attribute("data-points") or 0) > 0, f"chart {name} says it has no points"
    size = svg.size
    assert size["width"] > 200 and size["height"] > 10, f"chart {name} is not laid out: {size}"
    painted = painted_pixels(driver, svg)
    assert painted["changed"] >= min_pixels, f"chart {name} paints almost nothing: {painted}"


def test_the_driver_is_debians_chromedriver_and_selenium_manager_is_not_used() -> None:
    from selenium.webdriver.common.driver_finder import DriverFinder

    finder = DriverFinder(chrome_service(), chrome_options())
    assert finder.get_driver_path() == str(CHROMEDRIVER)
    assert finder.get_browser_path() == "", "the browser path comes from the options, not Selenium Manager"


def test_the_checks_themselves_see_a_failed_request_a_console_error_and_a_foreign_url(
    clean_browser: webdriver.Chrome, live_server: WebServer
) -> None:
    """The page checks below would pass vacuously if the logs were not read: show they catch each fault."""
    driver = clean_browser
    driver.get(live_server.url + "/no-such-page")
    assert any(n.startswith("404 ") and n.endswith("/no-such-page") for n in read_problems(driver).network)
    open_page(driver, live_server.url + "/status", "status-page")
    assert foreign_urls(driver) == []
    driver.execute_script(
        "console.error('planted error');"
        "const a = document.createElement('a');"
        "a.href = 'https://example.invalid/x';"
        "document.body.append(a);"
    )
    problems = read_problems(driver)
    assert any("planted error" in c for c in problems.console), problems
    assert foreign_urls(driver) == ["https://example.invalid/x"]


@pytest.mark.parametrize(("name", "path", "main_id"), PAGES, ids=[p[0] for p in PAGES])
def test_page_loads_without_console_errors_or_failed_requests_and_only_from_this_server(
    clean_browser: webdriver.Chrome,
    live_server: WebServer,
    week_db: tuple[Path, list[str]],
    screenshot_dir: Path,
    name: str,
    path: str | None,
    main_id: str,
) -> None:
    driver = clean_browser
    url = page_url(live_server, path, week_db)
    open_page(driver, url, main_id)
    if name == "tonight":
        wait_for(
            lambda: driver.find_element(By.ID, "tonight").get_attribute("data-live") == "sse",
            what="Tonight following the live stream",
        )
    assert driver.current_url.startswith(url), f"{url} redirected to {driver.current_url}"
    section = "nights" if name == "night" else name  # a night is shown under Nights
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-page") == section
    nav = driver.find_element(By.CSS_SELECTOR, f'#nav a[data-nav="{section}"]')
    assert nav.get_attribute("aria-current") == "page"
    problems = read_problems(driver)
    assert not problems, f"{name}:\n{problems}"
    assert foreign_urls(driver) == [], f"{name} refers to another origin"
    if name not in LIVE_SHOTS:
        choose_theme(driver, "dark")
        full_page_png(driver, screenshot_dir / f"{name}.png", max_height_px=2400)


@pytest.mark.parametrize("name", ["tonight", "night"])
def test_tonight_and_night_fit_a_phone_screen(
    clean_browser: webdriver.Chrome,
    live_server: WebServer,
    week_db: tuple[Path, list[str]],
    screenshot_dir: Path,
    name: str,
) -> None:
    driver = clean_browser
    set_viewport(driver, PHONE, mobile=True)
    path, main_id = {"tonight": ("/", "tonight"), "night": (None, "night-page")}[name]
    open_page(driver, page_url(live_server, path, week_db), main_id)
    if name not in LIVE_SHOTS:
        choose_theme(driver, "dark")
        full_page_png(driver, screenshot_dir / f"{name}-phone.png", max_height_px=2000)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"{name} scrolls sideways by {overflow} px on a {PHONE[0]} px phone"
    assert not read_problems(driver)


def test_night_timeline_charts_paint_their_data(
    clean_browser: webdriver.Chrome, live_server: WebServer, week_db: tuple[Path, list[str]]
) -> None:
    driver = clean_browser
    open_page(driver, page_url(live_server, None, week_db), "night-page")
    charts = {
        c.get_attribute("data-chart") or "": c for c in driver.find_elements(By.CSS_SELECTOR, "svg.chart")
    }
    assert set(NIGHT_CHARTS) <= set(charts), f"charts on the Night page: {sorted(charts)}"
    for name in NIGHT_CHARTS:
        assert_chart_drawn(driver, charts[name])
    assert not read_problems(driver)


def test_an_events_marker_opens_its_waveform_snippet(
    clean_browser: webdriver.Chrome, live_server: WebServer, week_db: tuple[Path, list[str]]
) -> None:
    db, night_ids = week_db
    driver = clean_browser
    open_page(driver, f"{live_server.url}/night/{night_ids[-1]}", "night-page")
    assert driver.find_elements(By.ID, "event") == [], "no event is chosen before the click"
    row = driver.find_element(
        By.CSS_SELECTOR, 'svg.chart[data-chart="events"] g.row[data-type="limb_movement"]'
    )
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (event_id, start_at) = conn.execute(
            "SELECT id, start_at FROM events WHERE night_id = ? AND event_type = 'limb_movement'"
            " ORDER BY start_at LIMIT 1",
            (night_ids[-1],),
        ).fetchone()
    finally:
        conn.close()
    # a tap on the first limb-movement mark (x from its start, y in its row), as a finger would
    first_s = float((row.get_attribute("data-starts") or "0").split(",")[0])
    driver.execute_script(
        """
        const [row, firstS] = arguments;
        const svg = row.closest('svg.chart');
        const r = svg.getBoundingClientRect(), rows = svg.querySelectorAll('g.row');
        const span = (Number(svg.dataset.t1) - Number(svg.dataset.t0)) / 1000;
        const x = r.left + (firstS + 0.5) / span * r.width;
        const y = r.top + (Number(row.dataset.row) + 0.5) / rows.length * r.height;
        for (const type of ['pointerdown', 'pointerup']) {
          const init = {bubbles: true, clientX: x, clientY: y, pointerType: 'mouse'};
          svg.dispatchEvent(new PointerEvent(type, init));
        }
        """,
        row,
        first_s,
    )
    assert start_at
    section = wait_for(
        lambda: driver.find_element(By.CSS_SELECTOR, f'#event[data-event-id="{event_id}"]'),
        what=f"the section of event {event_id}",
    )
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (n,) = conn.execute("SELECT n FROM snippets WHERE event_id = ?", (event_id,)).fetchone()
    finally:
        conn.close()
    wave = section.find_element(By.CSS_SELECTOR, 'svg.chart[data-chart="snippet"]')
    assert int(wave.get_attribute("data-points") or 0) == n, "the waveform shows the stored snippet's samples"
    assert_chart_drawn(driver, wave)
    assert not read_problems(driver)


def test_trend_charts_paint_a_dot_per_night(
    clean_browser: webdriver.Chrome, live_server: WebServer, week_db: tuple[Path, list[str]]
) -> None:
    driver = clean_browser
    open_page(driver, live_server.url + "/trends", "trends")
    charts = driver.find_elements(By.CSS_SELECTOR, '#trend-charts svg.chart[data-chart^="trend-"]')
    assert charts, "Trends has no charts"
    drawn = 0
    for svg in charts:
        dots = svg.find_elements(By.CSS_SELECTOR, "circle.dot")
        assert len(dots) <= len(week_db[1])
        if dots:
            assert_chart_drawn(driver, svg, min_pixels=20)
            drawn += 1
    assert drawn >= 2, "at least two trend metrics have values for a simulated week"
    movement = driver.find_element(By.CSS_SELECTOR, 'svg.chart[data-chart="trend-movement_index_per_h"]')
    assert len(movement.find_elements(By.CSS_SELECTOR, "circle.dot")) == len(week_db[1])
    assert not read_problems(driver)


def test_the_theme_toggle_switches_and_the_choice_is_remembered(
    clean_browser: webdriver.Chrome, live_server: WebServer
) -> None:
    driver = clean_browser
    open_page(driver, live_server.url + "/status", "status-page")
    first = driver.find_element(By.TAG_NAME, "html").get_attribute("data-theme")
    assert first in ("dark", "light")
    background = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    other = "light" if first == "dark" else "dark"
    choose_theme(driver, other)
    assert driver.execute_script("return getComputedStyle(document.body).backgroundColor") != background
    open_page(driver, live_server.url + "/nights", "nights")
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("data-theme") == other, "choice remembered"
    choose_theme(driver, first)
    assert not read_problems(driver)


def test_nights_table_sorts_by_a_column_when_its_header_is_clicked(
    clean_browser: webdriver.Chrome, live_server: WebServer, week_db: tuple[Path, list[str]]
) -> None:
    driver = clean_browser
    open_page(driver, live_server.url + "/nights", "nights")
    rows = driver.find_elements(By.CSS_SELECTOR, "#nights-table tbody tr[data-night-id]")
    assert sorted(r.get_attribute("data-night-id") or "" for r in rows) == sorted(week_db[1])
    driver.find_element(By.CSS_SELECTOR, '#nights-table th[data-sort="awakenings"] a').click()
    table = wait_for(
        lambda: driver.find_element(By.CSS_SELECTOR, '#nights-table[data-sort="awakenings"]'),
        what="the table sorted by awakenings",
    )
    order = table.get_attribute("data-order")
    column = [th.get_attribute("data-sort") for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    index = column.index("awakenings")
    values = [
        int(r.find_elements(By.TAG_NAME, "td")[index].text)
        for r in table.find_elements(By.CSS_SELECTOR, "tbody tr[data-night-id]")
    ]
    assert values == sorted(values, reverse=order == "desc"), f"awakenings {order}: {values}"
    assert not read_problems(driver)


def test_export_links_answer_with_a_zip_and_an_edf_file(
    clean_browser: webdriver.Chrome, live_server: WebServer
) -> None:
    driver = clean_browser
    open_page(driver, live_server.url + "/export", "export")
    csv = driver.find_element(By.CSS_SELECTOR, '#export-table a[data-export="csv"]').get_attribute("href")
    edf = driver.find_element(By.CSS_SELECTOR, '#export-table a[data-export="edf"]').get_attribute("href")
    fetch_js = """
      const [url, done] = arguments;
      fetch(url).then(async (r) => {
        const bytes = new Uint8Array(await r.arrayBuffer());
        done({status: r.status, type: r.headers.get('content-type'), head: Array.from(bytes.slice(0, 8))});
      }).catch((e) => done({error: String(e)}));
    """
    got_csv = driver.execute_async_script(fetch_js, csv)
    assert got_csv.get("status") == 200 and got_csv["type"] == "application/zip", got_csv
    assert got_csv["head"][:4] == [0x50, 0x4B, 0x03, 0x04], "a zip file starts with PK"
    got_edf = driver.execute_async_script(fetch_js, edf)
    assert got_edf.get("status") == 200, got_edf
    assert bytes(got_edf["head"]) == b"0       ", "an EDF header starts with its version, '0' and 7 spaces"
    assert not read_problems(driver)
