"""Placeholder replaced by the dashboard work."""
