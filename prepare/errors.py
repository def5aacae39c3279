"""The error prepare raises for a model it cannot serve."""


class UnsupportedModelError(ValueError):
    """The ONNX file is not a model this project can serve; the message says why."""
