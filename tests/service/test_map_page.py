"""The map page in headless Chromium: it draws the network and a route with its ETA from
the service's own endpoints (no tiles, no CDN; Chromium runs with networking to other
hosts unused), reached by clicking on the canvas."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium not installed (apt-get install -y chromium); CI installs it")
WIDTH, HEIGHT = 1000, 800


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "chromium is required in CI"
    profile = tempfile.mkdtemp(prefix="nareta-chromium-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
             "--hide-scrollbars", "--virtual-time-budget=15000", *args],
            capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_page_is_self_contained(client):
    html = client.get("/").text
    assert "<canvas" in html and "/v1/network.geojson" in html and "/v1/route" in html
    # nothing is loaded from elsewhere: the only outside addresses are the attribution's links
    outside = re.findall(r'[^\s]*https?://[^\s"]*', html)
    assert outside == ['href="https://www.openstreetmap.org/copyright',
                       'href="https://opendatacommons.org/licenses/odbl/'], outside


def test_attribution_zoom_and_departure_time(server, client):
    # The departure-time control goes into the route request (the answer echoes it), the zoom
    # buttons zoom (pressed twice: x4), and the OSM / ODbL attribution is on the page.
    url = (f"{server.base_url}/?departure=2026-11-18T08:15&zoom=in,in,out,in"
           "&from=-76.6010,39.2905&to=-76.5660,39.2850")
    dom = chromium("--dump-dom", url).stdout
    assert 'data-state="routed"' in dom, dom[-2000:]
    assert "departure 2026-11-18T08:15:00" in dom
    assert 'data-zoom="4"' in dom
    assert "OpenStreetMap" in dom and "ODbL" in dom
    default = chromium("--dump-dom", f"{server.base_url}/?from=-76.6010,39.2905"
                       "&to=-76.5660,39.2850").stdout
    assert "departure 2026-11-18T12:00 (default)" in default and 'data-zoom="1"' in default


def test_click_to_route(server, tmp_path: Path):
    # Two clicks on the canvas (pixels): the page routes between them and shows the ETA.
    url = f"{server.base_url}/?clicks=300,400;700,350"
    dom = chromium("--dump-dom", url).stdout
    assert 'data-state="routed"' in dom, dom[-2000:]
    assert "ETA " in dom and " km, " in dom

    screenshot = tmp_path / "map.png"
    chromium(f"--screenshot={screenshot}", url)
    assert screenshot.is_file()
    from PIL import Image

    image = Image.open(screenshot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    colors = image.getcolors(maxcolors=1 << 20)
    red = sum(count for count, (r, g, b) in colors if r > 180 and g < 60 and b < 60)
    grey = sum(count for count, (r, g, b) in colors if abs(r - 154) < 30 and abs(b - 166) < 30
               and abs(g - 160) < 30)
    assert red > 200, "the route (red) is not drawn"
    assert grey > 2000, "the road network (grey) is not drawn"
