"""opsctl: the operations tool and daemons of the connector platform."""

__version__ = "0.1.0"
