"""Proving the savings: metrics, baseline, heartbeat, reports and charts, feedback and
the dashboard's data."""
