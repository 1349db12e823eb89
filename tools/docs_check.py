"""Open the built site in headless Chromium and fail on any console message.

``make docs-check`` (or ``python tools/docs_check.py site``) serves ``site/`` over HTTP on
127.0.0.1 (as a reader's browser would load it: the search worker does not run from
``file://``), loads the home page and the backward-pass tutorial in headless Chromium
(Debian's ``chromium`` package), lets their scripts run, and fails if the browser logged
anything to the console (a script error, a missing asset, a failed request). Screenshots of
both pages go to ``site-screenshots/`` for a human look.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

PAGES = {"home": "index.html", "backward-tutorial": "tutorials/backward/index.html"}
_CONSOLE = re.compile(r":CONSOLE[^\]]*\]\s*(.*)")


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("docs-check: no Chromium found; install Debian's chromium package "
                     "(apt-get install chromium)")


def check_page(chrome: str, url: str, shot: Path) -> list[str]:
    """The console messages Chromium logged while loading ``url`` (screenshot in ``shot``)."""
    args = [chrome, "--headless=new", "--disable-gpu", "--no-first-run",
            "--enable-logging=stderr", "--v=1", "--hide-scrollbars",
            "--window-size=1280,2000", "--virtual-time-budget=8000",
            f"--screenshot={shot}", url]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    messages = [m.group(1) for line in r.stderr.splitlines() if (m := _CONSOLE.search(line))]
    if r.returncode != 0:
        messages.append(f"chromium exited {r.returncode}")
    if not shot.exists() or shot.stat().st_size < 10_000:
        messages.append(f"no screenshot written to {shot}")
    return messages


def main(argv: list[str]) -> int:
    site = Path(argv[0] if argv else "site")
    for page in PAGES.values():
        if not (site / page).exists():
            raise SystemExit(f"docs-check: {site / page} does not exist; run make docs first")
    chrome = browser()
    shots = Path("site-screenshots")
    shots.mkdir(exist_ok=True)
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    failed = 0
    try:
        for name, page in PAGES.items():
            url = f"http://127.0.0.1:{server.server_address[1]}/{page}"
            shot = shots / f"{name}.png"
            shot.unlink(missing_ok=True)
            messages = check_page(chrome, url, shot)
            print(f"{page}: {'ok' if not messages else 'FAILED'} (screenshot {shot})")
            for m in messages:
                print(f"  console: {m}")
            failed += bool(messages)
    finally:
        server.shutdown()
    return 1 if failed else 0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the check reports what matters
        pass


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
