"""HTTP API of gaiverse (FastAPI): `create_app` in app.py."""
