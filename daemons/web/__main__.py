"""``python -m daemons.web``: what ``opsctl daemon web`` runs."""

from daemons.web.main import main

main()
