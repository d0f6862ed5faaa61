"""The direct HTTP path: uvicorn's httptools protocol answering hot requests itself.

The only modules allowed to import uvicorn's protocol internals (see .importlinter).
"""
