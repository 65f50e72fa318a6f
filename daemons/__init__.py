"""The bundled daemons: each a factory plus a thin ``main()``."""
