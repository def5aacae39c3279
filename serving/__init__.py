"""Run the pip-bundled tritonserver (from nvidia-pytriton) on the model repository."""
