"""Tests of the emulated Kubernetes API server itself, over real HTTP and real kubectl."""
