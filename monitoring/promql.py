"""The metric names a PromQL expression reads (pure), so that tests can check every alert rule
and dashboard panel against the metrics the stack really exports.

Not a PromQL parser: strings, label matchers, ranges, grouping clauses, Grafana variables and
numbers are removed, and what remains that is not a function, keyword or operator is a name.
"""

from __future__ import annotations

import re

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
