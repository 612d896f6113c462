"""Operators' view of the bus: what the lag exporter probes, the T+1 schedule, the status view.

The YAML next to this package is the rest of monitoring: Prometheus configs, alert rules and
their promtool tests, JMX exporter rules, and the Grafana dashboard.
"""
