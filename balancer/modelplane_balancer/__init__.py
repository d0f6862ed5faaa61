"""Modelplane's balancer: a request-level HTTP/1.1 load balancer in front of the runtime pods."""

__version__ = "0.1.0"
