"""Wire formats: TF Serving's REST JSON (v1), the Open Inference Protocol (v2), tensors."""
