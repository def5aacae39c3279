"""Helpers that the stages' ``model.py`` files share: config parameters (``config``), Triton tensors in and
out (``tensors``), host and GPU arrays through DLPack (``gpu_arrays``), and the shutdown drain gate (``drain``).

Imports nothing else of the project. ``triton_python_backend_utils`` and CuPy are imported inside functions,
so everything here loads outside a Triton stub and without a GPU.
"""
