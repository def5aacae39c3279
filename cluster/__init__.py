"""The local cluster (``make cluster``): N supervised replicas of ``python -m serving`` behind nginx and HAProxy,
with Prometheus scraping them, all on loopback.

``local`` starts, restarts and stops the processes; ``config`` renders their configuration (the nginx
gateway from the same template as the Kubernetes gateway). Imports ``serving`` and ``python_backends``.
"""
