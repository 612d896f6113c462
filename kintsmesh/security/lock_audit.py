"""``python -m kintsmesh.security.lock_audit``: the vulnerability audit of ``requirements.lock`` (pip-audit,
advisories from PyPI / OSV). Exit 1 on a known vulnerability. When no advisory database answers (an
offline machine, or a mirror that serves packages but not PyPI's JSON API), it says so and how many
packages went unaudited instead of reporting "no known vulnerabilities"; exit 0 then, or 2 with --strict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kintsmesh.settings import REPO_ROOT

LOCK = REPO_ROOT / "requirements.lock"


def main(argv: list[str]) -> int:
    strict = "--strict" in argv
    pip_audit = Path(sys.executable).with_name("pip-audit")
    result = subprocess.run([str(pip_audit), "-r", str(LOCK), "--require-hashes", "--disable-pip", "--format", "json",
                             "--progress-spinner", "off"], capture_output=True, text=True)
    try:
        report = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        print(f"lock audit: pip-audit failed: {(result.stderr or result.stdout).strip()[-500:]}")
        return 2 if strict else 0
    packages = report.get("dependencies", [])
    audited = [p for p in packages if "skip_reason" not in p]
    vulnerable = [p for p in audited if p.get("vulns")]
    for package in vulnerable:
        ids = ", ".join(v["id"] + (f" (fixed in {', '.join(v['fix_versions'])})" if v.get("fix_versions") else "")
                        for v in package["vulns"])
        print(f"lock audit: {package['name']} {package['version']}: {ids}")
    if vulnerable:
        return 1
    if not audited:
        print(f"lock audit: NOT DONE: no advisory database answered for any of the {len(packages)} locked packages"
              " (PyPI's JSON API / OSV unreachable from here); run `make audit` where they are")
        return 2 if strict else 0
    print(f"lock audit: {len(audited)} of {len(packages)} locked packages audited, no known vulnerability"
          + (f"; {len(packages) - len(audited)} not found in the advisory source" if len(audited) < len(packages) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
