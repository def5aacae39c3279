"""Reusable YOLOv8 serving logic: the stages' classes, tested without Triton.

Each Triton model in ``model_repository/`` only coordinates; the work is done
by the classes here (``Preprocessor``, the inference runtimes, ``Postprocessor``).
"""
