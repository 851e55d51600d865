"""Specification of the rendered report in a real browser: headless Chromium opens report.html from disk, with no
network, and every chart shows (the page's own script counts the images that decoded); a screenshot of the page
is taken and must show content, not a blank page.

Chromium is a system package (``apt-get install -y chromium``). Without it the test is skipped, unless
``ALOE_REQUIRE_BROWSER=1`` (CI), where a missing browser is a failure: CI must not pass by skipping.
``ALOE_SCREENSHOT_DIR=DIR`` keeps the screenshot as ``DIR/report-screenshot.png`` for people to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from aloekit.report.html import write_report
from test_report_html import sample_summary

pytestmark = pytest.mark.slow

TIMEOUT_S = 60
SCREENSHOT = "report-screenshot.png"


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if found:
        return found
    message = "Chromium is not installed (apt-get install -y chromium): the report cannot be checked in a browser"
    if os.environ.get("ALOE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message}, and ALOE_REQUIRE_BROWSER=1 requires it")
    pytest.skip(message)


def headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium headless, offline, with a throwaway profile; the page gets 5 s of virtual time to load."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        *args,
    ]
    env = {**os.environ, "HOME": str(tmp_path)}  # Chromium writes caches under HOME
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False)
    assert result.returncode == 0, f"chromium exited {result.returncode}: {result.stderr[-2000:]}"
    return result


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return write_report(sample_summary(), tmp_path / "report")["html"]


def charts_shown(tmp_path: Path, report: Path) -> tuple[int, int, int]:
    """(charts that decoded in the browser, charts the page found, charts the report embedded)."""
    dom = headless(tmp_path, "--dump-dom", report.as_uri()).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, f"no <body> in the dumped DOM: {dom[:500]}"
    attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    # Absent attributes mean the page's script did not run (blocked by its own CSP, or a script error).
    assert "data-charts-loaded" in attributes, f"the counting script did not run: {body.group(0)}"
    return (
        int(attributes["data-charts-loaded"]),
        int(attributes["data-charts-found"]),
        int(attributes["data-charts-total"]),
    )


def test_every_chart_loads_in_the_browser(tmp_path: Path, report: Path) -> None:
    loaded, found, total = charts_shown(tmp_path, report)
    assert loaded == found == total >= 4


def test_a_screenshot_shows_the_rendered_report(tmp_path: Path, report: Path) -> None:
    from PIL import Image

    shot = tmp_path / SCREENSHOT
    headless(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", "--hide-scrollbars", report.as_uri())
    assert shot.is_file() and shot.stat().st_size > 50_000
    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        small = image.convert("RGB").resize((320, 1000))
    colours = small.getcolors(maxcolors=320 * 1000)
    assert colours is not None
    # A blank or error page is one or two colours; text, tables and charts make hundreds.
    assert len(colours) > 200
    assert max(count for count, _ in colours) < 0.9 * 320 * 1000
    if keep := os.environ.get("ALOE_SCREENSHOT_DIR"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / SCREENSHOT)


def test_the_findings_box_is_the_top_of_the_page_in_the_browser(tmp_path: Path) -> None:
    """Issue 17: the first thing a reader sees is what the run shows, warnings first (the demo's stuck answers)."""
    from test_report_claims import crafted

    page = write_report(crafted(improved=False), tmp_path / "demo")["html"]
    dom = headless(tmp_path, "--dump-dom", page.as_uri()).stdout
    sections = re.findall(r'<section id="([^"]+)"', dom)
    assert sections[0] == "findings"
    top = dom.split('<section id="findings">', 1)[1].split("</section>", 1)[0]
    assert "Read these results with care" in top and "answers A to 100.0% of n=48 questions" in top
    shot = tmp_path / "report-top.png"
    headless(tmp_path, f"--screenshot={shot}", "--window-size=1280,1100", "--hide-scrollbars", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 20_000
    if keep := os.environ.get("ALOE_SCREENSHOT_DIR"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report-top.png")


def test_every_chart_renders_in_the_browser_and_is_kept_for_people_to_look_at(tmp_path: Path, report: Path) -> None:
    """Each chart of the report, opened on its own in Chromium at its own size: the page shows the chart (text,
    bars, lines: many colours), not a broken-image icon. ``ALOE_SCREENSHOT_DIR`` keeps one PNG per chart, named by
    its caption, so a person can check legends, markers and chance lines (issue 17)."""
    import base64
    import io

    from PIL import Image

    charts = re.findall(r'<img class="chart" alt="([^"]*)" src="data:image/png;base64,([^"]+)"', report.read_text())
    assert len(charts) >= 4
    keep = os.environ.get("ALOE_SCREENSHOT_DIR")
    for k, (alt, data) in enumerate(charts):
        with Image.open(io.BytesIO(base64.b64decode(data))) as png:
            width, height = png.size
        page = tmp_path / f"chart-{k}.html"
        image_tag = f'<img alt="{alt}" src="data:image/png;base64,{data}">'
        page.write_text(f'<html><body style="margin:0">{image_tag}</body></html>')
        shot = tmp_path / f"chart-{k}.png"
        size = f"--window-size={width},{height}"
        headless(tmp_path, f"--screenshot={shot}", size, "--hide-scrollbars", page.as_uri())
        with Image.open(shot) as image:
            colours = image.convert("RGB").getcolors(maxcolors=width * height)
        assert colours is not None and len(colours) > 50, f"chart {k} ({alt}) shows almost nothing"
        if keep:
            slug = re.sub(r"[^a-z0-9]+", "-", alt.lower()).strip("-")[:40]
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / f"chart-{k}-{slug}.png")
