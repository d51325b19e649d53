"""The dashboard's pages, one module per area; each is a client of the public API (``web/api.py``)."""
