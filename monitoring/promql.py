"""The metric names a PromQL expression reads (pure), so that tests can check every alert rule
and dashboard panel against the metrics the stack really exports.

Not a PromQL parser: strings, label matchers, ranges, grouping clauses, Grafana variables and
numbers are removed, and what remains that is not a function, keyword or operator is a name.
"""

from __future__ import annotations

import re
from typing import Any

KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                      "unless", "offset", "inf", "nan"})
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_CLAUSES = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKENS = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-z]*|[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    text = _GRAFANA_VARIABLES.sub("", _STRINGS.sub('""', expr))
    text = _CLAUSES.sub("", _RANGES.sub("", _MATCHERS.sub("", text)))
    names: set[str] = set()
    for token in _TOKENS.finditer(text):
        name = token.group(0)
        if name[0].isdigit() or name.lower() in KEYWORDS or text[token.end():].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def rule_expressions(rules: dict[str, Any]) -> dict[str, str]:
    """Alert / record name -> expression, from a parsed Prometheus rules file."""
    return {rule.get("alert") or rule["record"]: rule["expr"]
            for group in rules["groups"] for rule in group["rules"]}


def recorded_names(rules: dict[str, Any]) -> set[str]:
    return {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}


def dashboard_expressions(dashboard: dict[str, Any]) -> dict[str, str]:
    """'<panel title> / <refId>' -> expression, plus the template variables' queries."""
    found = {f"{panel['title']} / {target['refId']}": target["expr"]
             for panel in dashboard["panels"] for target in panel.get("targets", [])}
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        if text.startswith("label_values("):  # label_values(<expr>, <label>)
            found[f"${variable['name']}"] = text[len("label_values("):text.rindex(",")]
    return found
