"""Prometheus (Debian binary) scraping the stack's metrics endpoints (config: monitoring/prometheus.yml)."""

from __future__ import annotations

from pathlib import Path
from string import Template

import requests

from kintsmesh.settings import REPO_ROOT
from kintsmesh.stack import prerequisites
from kintsmesh.stack.component import Component


class Prometheus(Component):
    """Prometheus scraping the stack's metrics endpoints (config: monitoring/prometheus.yml)."""

    name = "prometheus"
    port_setting = "prometheus_port"
    template = REPO_ROOT / "monitoring" / "prometheus.yml"

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    def prepare(self) -> None:
        prerequisites.prometheus_binary()
        self.home.mkdir(parents=True, exist_ok=True)
        rendered = Template(self.template.read_text()).substitute(
            prometheus_target=f"127.0.0.1:{self.settings.prometheus_port}",
            normalize_target=f"127.0.0.1:{self.settings.normalize_metrics_port}",
            resolve_target=f"127.0.0.1:{self.settings.resolve_metrics_port}",
            merge_target=f"127.0.0.1:{self.settings.merge_metrics_port}",
            monitor_target=f"127.0.0.1:{self.settings.monitor_metrics_port}",
            events_target=f"127.0.0.1:{self.settings.events_metrics_port}",
            api_target=f"127.0.0.1:{self.settings.api_port}",
            supervisor_target=f"127.0.0.1:{self.settings.supervisor_metrics_port}",
            registry_target=f"127.0.0.1:{self.settings.registry_port}",
            connect_jmx_target=f"127.0.0.1:{self.settings.connect_jmx_port}",
            # every broker's exporter: "a", "b" inside the template's brackets
            kafka_jmx_target='", "'.join(f"127.0.0.1:{self.settings.kafka_jmx_port + 100 * n}"
                                         for n in range(self.settings.kafka_brokers)),
            rules_dir=str(REPO_ROOT / "monitoring"),
            ca_file=str(self.settings.trusted_ca),
        )
        self.config_file.write_text(rendered)

    def command(self) -> list[str]:
        binary, _ = prerequisites.prometheus_binary()
        return [
            binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=7d",   # no --web.enable-lifecycle: nobody may stop or reload it over HTTP
        ]

    def healthy(self) -> bool:
        return requests.get(f"{self.settings.prometheus_endpoint}/-/ready", timeout=3).status_code == 200
