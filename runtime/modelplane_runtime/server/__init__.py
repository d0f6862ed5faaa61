"""The server process: binds the sockets, runs the front ends until SIGTERM, supervises workers.

Above the front ends (http/, and gRPC beside it): one process serves every protocol on one
data plane, so this package starts them together and drains them together.
"""
