"""The shipped Prometheus files pass promtool (Debian's prometheus package): the scrape config, the
alert rules, and the rules' unit tests. A missing promtool fails these tests, never skips them."""

from __future__ import annotations

import yaml
from deploy_support import ALERTS, DEPLOY, alert_expressions, run_promtool

PROMETHEUS = DEPLOY / "prometheus"


def test_promtool_accepts_the_scrape_config_and_the_rules_it_loads():
    output = run_promtool("check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert "1 rule files found" in output


def test_promtool_accepts_the_alert_rules():
    output = run_promtool("check", "rules", ALERTS.name, cwd=PROMETHEUS)
    assert f"{len(list(alert_expressions()))} rules found" in output


def test_the_alert_rules_pass_their_unit_tests():
    run_promtool("test", "rules", "alerts_test.yml", cwd=PROMETHEUS)


def test_every_alert_is_tested_and_says_how_urgent_it_is():
    alerts = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    alerts = [rule for rule in alerts if "alert" in rule]
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    assert {rule["alert"] for rule in alerts} <= tested
    for rule in alerts:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
