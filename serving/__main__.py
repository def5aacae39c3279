"""``python -m serving``: run tritonserver in the foreground on the model repository (loopback by default)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from serving.triton import DEFAULT_REPOSITORY, ServerOptions, build_backend_dir, server_command, server_environment


def parse_options(argv: list[str] | None = None) -> ServerOptions:
    defaults = ServerOptions()
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--host", default=defaults.host, help="address to bind (default loopback)")
    parser.add_argument("--http-port", type=int, default=defaults.http_port)
    parser.add_argument("--grpc-port", type=int, default=defaults.grpc_port)
    parser.add_argument("--metrics-port", type=int, default=defaults.metrics_port)
    parser.add_argument("--shm-mib", type=int, default=defaults.shm_default_mib, help="Python backend pool per stub")
    parser.add_argument("--exit-timeout", type=int, default=defaults.exit_timeout_s, help="seconds to drain on stop")
    args = parser.parse_args(argv)
    return ServerOptions(
        repository=args.repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        shm_default_mib=args.shm_mib,
        shm_growth_mib=args.shm_mib,
        exit_timeout_s=args.exit_timeout,
    )


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    command = server_command(options, build_backend_dir())
    print(" ".join(command), flush=True)
    # Replace this process: Ctrl-C / SIGTERM reach tritonserver, which drains and stops its stubs.
    os.execve(command[0], command, server_environment())


if __name__ == "__main__":
    main()
