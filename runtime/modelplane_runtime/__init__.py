"""Modelplane's inference runtime: TensorFlow models over TF Serving REST and Open Inference."""

__version__ = "0.1.0"
