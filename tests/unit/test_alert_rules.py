"""The alert rules in ops/prometheus load, and behave as their unit tests say, in
Prometheus's own rule checker (promtool, from Debian's ``prometheus`` package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import IN_CI

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "stockflow-alerts.yml"
RULE_TESTS = sorted((ROOT / "ops" / "prometheus" / "tests").glob("*.yml"))


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian package `prometheus`)"
        if IN_CI:
            pytest.fail(message + "; CI installs it, so it must be there")
        pytest.skip(message)
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )


def test_the_rules_are_valid() -> None:
    result = _run("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_behaves_as_its_unit_tests_say() -> None:
    assert RULE_TESTS
    result = _run("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_test_that_fires_it() -> None:
    rules = RULES.read_text()
    tests = "\n".join(path.read_text() for path in RULE_TESTS)
    alerts = {line.split(":", 1)[1].strip() for line in rules.splitlines() if "- alert:" in line}
    assert alerts
    for alert in alerts:
        assert f"alertname: {alert}" in tests, alert
