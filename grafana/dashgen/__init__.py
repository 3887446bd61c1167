"""Grafana dashboards and alert rules of otel-chatbot, as code (see grafana/build.py)."""
