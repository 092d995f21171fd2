"""Alerts: rule evaluation and alert lifecycle (pure), and the sinks that deliver notifications."""
