"""Without Chromium every browser test skips the same way, with one notice (issue 13: one module errored instead)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def browser_modules() -> list[str]:
    """Every test module that asks for the browser fixtures (by name: they are never imported)."""
    uses = re.compile(r"\bdef test_\w+\([^)]*\b(new_page|browser|pages)\b|\bdef \w+\([^)]*\bnew_page\b")
    return sorted(str(p.relative_to(TESTS.parent)) for p in TESTS.rglob("test_*.py") if uses.search(p.read_text()))


def test_without_chromium_every_browser_test_skips_with_one_notice():
    modules = browser_modules()
    assert "tests/integrations/api/test_docs_browser.py" in modules and len(modules) >= 7
    env = {**os.environ, "CHROMIUM_PATH": str(TESTS / "no-such-chromium")}
    done = subprocess.run(  # noqa: S603 - this interpreter, our own test modules
        [sys.executable, "-m", "pytest", *modules, "-ra", "-p", "no:cacheprovider"],
        env=env, cwd=TESTS.parent, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-3000:]
    notices = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(notices) == 1, notices
    notice = r"SKIPPED \[\d+\] tests/browser\.py:\d+: browser tests skipped: Chromium is not installed at "
    assert re.match(notice, notices[0]), notices[0]
    assert "no-such-chromium" in notices[0]
    counts = re.search(r"^=+ (\d+) skipped in ", out, re.MULTILINE)
    assert counts, out[-2000:]
    assert f"[{counts.group(1)}]" in notices[0]  # all of them, and nothing passed, failed or errored
    header = out.split("collected", 1)[0]
    assert "browser tests skipped: Chromium is not installed at " in header  # said once more, before the run
