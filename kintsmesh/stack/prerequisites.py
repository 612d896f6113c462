"""Tools the local stack needs, found or installed: Java, Maven, PostgreSQL, Prometheus.

JVM pieces come from Maven Central through the poms under ``stack/maven/``;
PostgreSQL and Prometheus come from Debian packages, installed with apt-get when
missing and we are root. Anything else missing is one clear line, not a trace.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from kintsmesh.errors import PrerequisiteMissing
from kintsmesh.settings import REPO_ROOT, Settings

MAVEN_DIR = REPO_ROOT / "stack" / "maven"


def java() -> str:
    path = shutil.which("java")
    if path is None:
        raise PrerequisiteMissing("java", "Java 17+ is not on PATH; install it (Debian: apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([path, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < 17:
        raise PrerequisiteMissing("java", f"Java 17+ is needed, found: {out.splitlines()[0] if out else 'unknown'}")
    return path


def _apt_install(package: str, component: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PrerequisiteMissing(component, f"{package} is not installed; install the Debian package '{package}' (apt-get install {package})")
    print(f"  installing Debian package {package} (apt-get) ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PrerequisiteMissing(component, f"'{' '.join(cmd)}' failed: {tail[0]}")


def postgres_bindir() -> Path:
    """Directory with initdb / pg_ctl / postgres, installing Debian's postgresql if needed."""
    for attempt in range(2):
        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        if candidates:
            return candidates[-1].parent
        if attempt == 0:
            _apt_install("postgresql", "postgres")
    raise PrerequisiteMissing("postgres", "PostgreSQL server binaries not found under /usr/lib/postgresql")


def prometheus_binary() -> tuple[str, str | None]:
    """(prometheus, promtool-or-None), installing Debian's prometheus if needed."""
    if shutil.which("prometheus") is None:
        _apt_install("prometheus", "prometheus")
    path = shutil.which("prometheus")
    if path is None:
        raise PrerequisiteMissing("prometheus", "the prometheus binary is not on PATH after installing it")
    return path, shutil.which("promtool")


def _maven() -> str:
    path = shutil.which("mvn")
    if path is None:
        _apt_install("maven", "maven")
        path = shutil.which("mvn")
    if path is None:
        raise PrerequisiteMissing("maven", "Maven (mvn) is not on PATH; install it (apt-get install maven)")
    return path


def resolve_jars(settings: Settings, module: str, output: Path) -> None:
    """Run ``mvn package`` in ``stack/maven/<module>`` unless ``output`` is current.

    The pom's hash is stamped next to the output, so editing a version in the pom
    re-resolves, and an unchanged pom costs nothing on the next ``stack up``.
    """
    pom = MAVEN_DIR / module / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    stamp = output.with_name(output.name + ".stamp")
    if output.is_dir() and stamp.is_file() and stamp.read_text().strip() == digest and any(output.iterdir()):
        return
    mvn = _maven()
    if output.is_dir():
        shutil.rmtree(output)
    print(f"  resolving {module} jars from Maven Central into {output} (first run only) ...", flush=True)
    log = settings.stack_dir / "logs" / f"maven-{module}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-B", "-q",
        "-s", str(MAVEN_DIR / "settings.xml"),
        f"-Dmaven.repo.local={settings.maven_repository}",
        f"-Dstack.dir={settings.stack_dir}",
        "package",
    ]
    with open(log, "w") as out:
        result = subprocess.run(cmd, cwd=pom.parent, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        errors = [line for line in log.read_text().splitlines() if "ERROR" in line][:1]
        reason = errors[0][:300] if errors else f"exit code {result.returncode}"
        raise PrerequisiteMissing(module, f"mvn could not resolve the jars ({reason}); full log: {log}")
    stamp.write_text(digest + "\n")
