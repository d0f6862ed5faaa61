"""The HTTP front end: the FastAPI app, the v1 and v2 routes, the hot path, the server."""
