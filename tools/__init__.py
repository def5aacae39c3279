"""Programs that drive a whole server: the demo (``python -m tools.demo``), the soak and fault run
(``python -m tools.soak``) and the GPU check (``python -m tools.gpu_check``).

They sit above everything else and may import ``serving``, ``prepare``, ``client``, ``benchmarks``, ``evaluation``
and ``python_backends``.
"""
