"""One supervised tritonserver: ``python -m serving`` (``make serve``).

``triton`` finds the tritonserver bundled in nvidia-pytriton and builds its command line, ``server`` starts and
stops it cleanly (no stub, shared-memory region or folder left behind: ``server_dirs``), ``supervisor`` restarts
it when a stage dies or its probe (``probe``) fails, ``processes`` finds its stubs, picks ports no client
connection can take and names what holds a taken one, ``lb_agent`` answers a load balancer's agent check.

May import ``python_backends``; nothing above it.
"""
