"""The web console: server-rendered pages over the API's store functions (see routes.py)."""
