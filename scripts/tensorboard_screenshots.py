"""Screenshots of TensorBoard showing a run, taken by a headless Chromium (the README's pictures).

    python scripts/tensorboard_screenshots.py logdir=<run>/tensorboard [out=docs/images] [chromium=/usr/bin/chromium]

Starts ``tensorboard --logdir <logdir>`` on a free local port, opens its scalars and images dashboards in
Chromium through Playwright, and saves ``tensorboard_scalars.png`` (losses, accuracies, learning rate),
``tensorboard_filters.png`` (the first layer's filters, the confusion matrix, the misclassified examples) and
``tensorboard_layer_stats.png`` (gradient norm, update-to-weight ratios, activation spreads) in ``out``.
Needs the ``playwright`` Python package and a Chromium (Debian: ``apt-get install chromium``); neither is a
dependency of the project.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from training.cli import parse_key_values, run_plain

DEFAULTS = {"logdir": "", "out": "docs/images", "chromium": "/usr/bin/chromium"}
# (file name, dashboard and tag filter): TensorBoard's own URL fragments
PAGES = {
    "tensorboard_scalars.png": "#scalars&_smoothingWeight=0&tagFilter="
    + quote(r"^(train/(loss|acc)_epoch|val/(loss|acc)|lr-.*)$", safe=""),
    "tensorboard_filters.png": "#images&tagFilter=" + quote(r"^(filters|val)/", safe=""),
    "tensorboard_layer_stats.png": "#scalars&_smoothingWeight=0&tagFilter="
    + quote(r"^(train/grad_norm|update_ratio/.*weight|activations/features\.act\d/std)$", safe=""),
}
WIDTH, HEIGHT = 1400, 900


def parse_args(args: list[str]) -> dict[str, str]:
    options = parse_key_values(args, DEFAULTS)
    if not options["logdir"] or not Path(options["logdir"]).is_dir():
        raise ValueError(f"logdir must be a run's TensorBoard directory, got {options['logdir']!r}")
    if shutil.which(options["chromium"]) is None:
        raise ValueError(f"no Chromium at {options['chromium']!r}: install one (Debian: apt-get install chromium)")
    return options


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"TensorBoard did not answer at {url} within {seconds:.0f} s")


def main(args: list[str]) -> None:
    options = parse_args(args)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise ValueError("this script needs the playwright package: pip install playwright") from err
    out = Path(options["out"])
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", options["logdir"], "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=options["chromium"], args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            for name, fragment in PAGES.items():
                page.goto(url + fragment, wait_until="networkidle")
                page.wait_for_timeout(3000)  # the charts draw after the data arrives
                page.screenshot(path=str(out / name))
                print(out / name)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    run_plain(main, ValueError, RuntimeError)
