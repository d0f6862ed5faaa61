"""Peer servers the benchmark starts; each file runs as a script under its own interpreter."""
