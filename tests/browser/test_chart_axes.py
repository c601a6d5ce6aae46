"""Every chart, as Chromium lays it out, has labelled axes, and a night's lanes share one time axis.

Read from the rendered DOM (``getBoundingClientRect`` of each lane's plot, value axis and time
axis), at a desktop and a phone width:

* a value axis with numbers (or, on the sleep and events lanes, the names of its rows) and the
  unit in the figure's caption;
* a time axis under every lane: local hours (``HH:MM``) on a night and Tonight's last hour, dates
  (``6 Dec``) on Trends; labels laid out left to right, inside the plot's width, not overlapping;
* on one timeline, every lane's plot spans the same pixels left to right, carries the same
  ``data-t0``/``data-t1``, and a time label (``02:00``) sits at the same x on every lane.
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver

from tests.browser.browserutil import DESKTOP, PHONE, WebServer, read_problems, set_viewport
from tests.browser.test_pages import open_page

NIGHT_LANES = ["activity", "sleep", "events", "heart", "breath"]
TONIGHT_LANES = ["activity", "events", "heart"]
VALUE_LANES = {"activity", "heart", "breath"}
"""Lanes with a numeric value axis; the sleep and events lanes name their rows instead."""
UNITS = {"activity": "movement count per 30-s epoch", "heart": "/min", "breath": "/min"}

CLOCK = re.compile(r"^\d\d:\d\d$")
DATE = re.compile(r"^\d{1,2} [A-Z][a-z]{2}$")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
SLACK_PX = 1.0
"""Layout rounding allowed when comparing pixel positions."""

# Each lane of the timeline in ``container``: its plot's box and time range, its value-axis and
# time-axis labels (text and box, only those laid out), its row names, its figure's caption and unit.
LANES_JS = """
const container = document.querySelector(arguments[0]);
if (!container) return null;
const box = (el) => { const r = el.getBoundingClientRect();
  return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height}; };
const labels = (svg) => !svg ? [] : Array.from(svg.querySelectorAll('text.tick-label'))
  .map((t) => ({text: t.textContent.trim(), box: box(t)}))
  .filter((l) => l.box.width > 0 && l.box.height > 0);
return Array.from(container.querySelectorAll('div.lane')).map((lane) => {
  const chart = lane.querySelector('svg.chart');
  const figure = lane.closest('figure.plot');
  const caption = figure && figure.querySelector('figcaption');
  return {
    name: lane.dataset.lane,
    plot: box(chart),
    t0: chart.dataset.t0 || null,
    t1: chart.dataset.t1 || null,
    y: labels(lane.querySelector('svg.y-axis')),
    rows: Array.from(lane.querySelectorAll('.lane-labels li, .lane-labels .row-label'))
      .map((li) => li.textContent.trim()).filter((t) => t),
    x: labels(lane.querySelector('svg.x-axis')),
    xAxis: lane.querySelector('svg.x-axis') ? box(lane.querySelector('svg.x-axis')) : null,
    unit: figure ? figure.dataset.unit : null,
    caption: caption ? caption.innerText.trim() : '',
  };
});
"""


def lanes_of(driver: webdriver.Chrome, selector: str) -> dict[str, dict[str, Any]]:
    found = driver.execute_script(LANES_JS, selector)
    assert found, f"no lanes in {selector}"
    return {lane["name"]: lane for lane in found}


def assert_time_axis(lane: dict[str, Any], pattern: re.Pattern[str], what: str) -> None:
    """At least two labels of the form ``pattern``, left to right, under the plot, none overlapping."""
    name, plot, labels = lane["name"], lane["plot"], lane["x"]
    assert len(labels) >= 2, f"{name}: the time axis has {len(labels)} labels: {labels}"
    bad = [x["text"] for x in labels if not pattern.match(x["text"])]
    assert not bad, f"{name}: time-axis labels that are not {what}: {bad}"
    assert lane["xAxis"]["top"] >= plot["bottom"] - SLACK_PX, f"{name}: the time axis is not under the plot"
    ordered = sorted(labels, key=lambda x: x["box"]["left"])
    for x in ordered:
        inside = plot["left"] - SLACK_PX <= x["box"]["left"] and x["box"]["right"] <= plot["right"] + SLACK_PX
        assert inside, f"{name}: label {x['text']} at {x['box']} is outside the plot {plot}"
    for a, b in pairwise(ordered):
        assert a["box"]["right"] <= b["box"]["left"] + SLACK_PX, (
            f"{name}: time labels {a['text']} and {b['text']} overlap"
        )


def assert_value_axis(lane: dict[str, Any]) -> None:
    """Numbers beside the plot, largest at the top, and the unit in the caption."""
    name, labels = lane["name"], lane["y"]
    assert len(labels) >= 2, f"{name}: the value axis has {len(labels)} labels: {labels}"
    bad = [y["text"] for y in labels if not NUMBER.match(y["text"])]
    assert not bad, f"{name}: value-axis labels that are not numbers: {bad}"
    top_down = [float(y["text"]) for y in sorted(labels, key=lambda y: y["box"]["top"])]
    assert top_down == sorted(top_down, reverse=True), f"{name}: values not largest at the top: {top_down}"
    for y in labels:
        box, plot = y["box"], lane["plot"]
        assert box["right"] <= plot["left"] + SLACK_PX, f"{name}: value {y['text']} is over the plot"
        beside = plot["top"] - 8 <= box["top"] and box["bottom"] <= plot["bottom"] + 8
        assert beside, f"{name}: value {y['text']} is not beside the plot"
    assert lane["unit"], f"{name}: the figure has no unit"
    assert f"({lane['unit']})" in lane["caption"], f"{name}: the caption {lane['caption']!r} shows no unit"


def assert_one_time_axis(lanes: dict[str, dict[str, Any]]) -> None:
    """Every lane's plot spans the same pixels and times, and each time label sits at one x."""
    first = next(iter(lanes.values()))
    for lane in lanes.values():
        for edge in ("left", "right"):
            assert abs(lane["plot"][edge] - first["plot"][edge]) <= SLACK_PX, (
                f"the {lane['name']} plot's {edge} edge is at {lane['plot'][edge]:.1f} px, "
                f"the {first['name']} plot's at {first['plot'][edge]:.1f} px"
            )
        assert (lane["t0"], lane["t1"]) == (first["t0"], first["t1"]), f"{lane['name']}: another time range"
        assert lane["t0"] is not None, f"{lane['name']}: no time range"
    at: dict[str, tuple[str, float]] = {}
    for lane in lanes.values():
        for x in lane["x"]:
            middle = (x["box"]["left"] + x["box"]["right"]) / 2
            seen = at.setdefault(x["text"], (lane["name"], middle))
            assert abs(seen[1] - middle) <= SLACK_PX, (
                f"{x['text']} is at {middle:.1f} px on {lane['name']} but {seen[1]:.1f} px on {seen[0]}"
            )


@pytest.fixture(params=[DESKTOP, PHONE], ids=["desktop", "phone"])
def sized_browser(request: pytest.FixtureRequest, clean_browser: webdriver.Chrome) -> webdriver.Chrome:
    if request.param == PHONE:
        set_viewport(clean_browser, PHONE, mobile=True)
    return clean_browser


def test_a_nights_lanes_have_labelled_axes_on_one_time_axis(
    sized_browser: webdriver.Chrome, live_server: WebServer, week_db: tuple[Path, list[str]]
) -> None:
    driver = sized_browser
    open_page(driver, f"{live_server.url}/night/{week_db[1][-1]}", "night-page")
    lanes = lanes_of(driver, "#timeline [data-timeline]")
    assert list(lanes) == NIGHT_LANES
    for lane in lanes.values():
        assert_time_axis(lane, CLOCK, "hours (HH:MM)")
        if lane["name"] in VALUE_LANES:
            assert_value_axis(lane)
            assert lane["unit"] == UNITS[lane["name"]]
    assert len(lanes["events"]["rows"]) >= 2, f"the events lane names its rows: {lanes['events']['rows']}"
    assert_one_time_axis(lanes)
    assert not read_problems(driver)


def test_a_zoomed_night_keeps_one_time_axis_in_minutes(
    sized_browser: webdriver.Chrome, live_server: WebServer, week_db: tuple[Path, list[str]]
) -> None:
    """Ten minutes from the second hour of the night: every lane shows them and only them."""
    driver = sized_browser
    open_page(driver, f"{live_server.url}/night/{week_db[1][-1]}", "night-page")
    whole = lanes_of(driver, "#timeline [data-timeline]")["activity"]
    start = driver.execute_script(
        "const d = new Date(Number(arguments[0]) + 3600 * 1000);"
        "return [d, new Date(d.getTime() + 600 * 1000)].map((t) => t.toTimeString().slice(0, 8));",
        whole["t0"],
    )
    open_page(driver, f"{live_server.url}/night/{week_db[1][-1]}?from={start[0]}&to={start[1]}", "night-page")
    lanes = lanes_of(driver, "#timeline [data-timeline]")
    assert list(lanes) == NIGHT_LANES
    assert int(lanes["activity"]["t1"]) - int(lanes["activity"]["t0"]) == 600_000
    for lane in lanes.values():
        assert_time_axis(lane, CLOCK, "clock times (HH:MM)")
    assert_one_time_axis(lanes)
    assert not read_problems(driver)


def test_tonights_last_hour_has_labelled_axes_on_one_time_axis(
    sized_browser: webdriver.Chrome, live_server: WebServer
) -> None:
    driver = sized_browser
    open_page(driver, live_server.url + "/", "tonight")
    lanes = lanes_of(driver, "#live-chart [data-timeline]")
    assert list(lanes) == TONIGHT_LANES
    for lane in lanes.values():
        assert_time_axis(lane, CLOCK, "hours (HH:MM)")
        if lane["name"] in VALUE_LANES:
            assert_value_axis(lane)
    assert int(lanes["heart"]["t1"]) - int(lanes["heart"]["t0"]) == 3_600_000
    assert_one_time_axis(lanes)
    assert not read_problems(driver)


def test_every_trend_has_dates_under_it_and_values_with_units_beside_it(
    sized_browser: webdriver.Chrome, live_server: WebServer
) -> None:
    driver = sized_browser
    open_page(driver, live_server.url + "/trends", "trends")
    lanes = lanes_of(driver, "#trend-charts")
    assert len(lanes) >= 4, f"trend charts: {sorted(lanes)}"
    for lane in lanes.values():
        assert lane["name"].startswith("trend-")
        assert_time_axis(lane, DATE, "dates (6 Dec)")
        assert_value_axis(lane)
    assert not read_problems(driver)
