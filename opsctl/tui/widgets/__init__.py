"""The dashboard's widgets, one per module; each renders data from ``opsctl.tui.data``."""
