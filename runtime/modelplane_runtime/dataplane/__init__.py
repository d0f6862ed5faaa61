"""The data plane: model repository, loading, processing, validation and batching.

Plain Python and numpy: nothing here knows about HTTP or gRPC.
"""
