"""Inference runtimes behind one small interface (see ``base.InferenceRuntime``)."""
