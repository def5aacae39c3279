"""``import tensorrt`` where only the ``tensorrt-cuXX-bindings`` wheel is installed.

That wheel carries the whole Python API (``Builder``, ``Runtime``, ``nptype``, ``__version__``) as the
module ``tensorrt_bindings`` and no ``tensorrt`` module. scripts/gpu_container_setup.sh copies this
folder next to it; the shim then stands for ``tensorrt_bindings`` itself.
"""

import sys

import tensorrt_bindings

sys.modules[__name__] = tensorrt_bindings
