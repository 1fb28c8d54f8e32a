"""A zguide-style REQ/REP ledger service, before zvsr (server.py) and replicated by zvsr (app.py)."""
