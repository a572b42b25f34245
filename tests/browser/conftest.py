"""Browser-test plumbing: failure reports for fixtures, and a loud banner when the tests were skipped."""

from collections.abc import Generator

import pytest

SKIP_MARK = "BROWSER TESTS SKIPPED"  # test_browser.py starts its module-level skip reason with this

ReportHook = Generator[None, pytest.TestReport, pytest.TestReport]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> ReportHook:
    """Store each phase's report on the item as `rep_<phase>` (read by the `page` fixture)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat why the browser tests were skipped, loudly, at the end of the run (also under -q and xdist)."""
    reasons = {
        str(report.longrepr[2]).removeprefix("Skipped: ")
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and SKIP_MARK in str(report.longrepr[2])
    }
    for reason in sorted(reasons):
        terminalreporter.write_sep("!", SKIP_MARK, red=True, bold=True)
        terminalreporter.write_line(reason, red=True, bold=True)
        terminalreporter.write_sep("!", red=True, bold=True)
