"""Run one MLflow pyfunc scoring server for a local model directory (a child of the gateway).

``--env-manager local`` runs MLflow's scoring server (uvicorn, with the command and environment
``mlflow models serve`` would use) in this very process, so the gateway holds the server's own
process, and MLflow, imported once to build the command, is not imported a second time by a new
interpreter (``exec`` of ``python -m uvicorn`` cost about 0.85 CPU seconds more a start here);
``virtualenv`` first builds the model's environment (MLflow caches it) and serves from it, as
``mlflow models serve --env-manager virtualenv`` does.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlflow_steward.deployment.onprem.scoring")
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=None)
    parser.add_argument("--env-manager", choices=("local", "virtualenv"), default="local")
    parser.add_argument("--parent-pid", type=int, help="stop when this process dies")
    args = parser.parse_args(argv)
    if args.parent_pid:
        from mlflow_steward.deployment.onprem.ports import die_with_parent

        die_with_parent(args.parent_pid)
    if args.env_manager == "local":
        from mlflow_steward._mlflow_adapter import scoring_server_command

        command, env = scoring_server_command(
            args.model_path,
            port=args.port,
            host=args.host,
            workers=args.workers,
            timeout=args.timeout,
        )
        # command is `python -m uvicorn ARGS...`: run uvicorn's command line here instead
        import uvicorn

        os.environ.clear()
        os.environ.update(env)  # os.environ's copy plus the model's path, as MLflow passes them
        sys.stdout.flush()
        uvicorn.main(args=command[3:], prog_name="uvicorn")
        return
    from mlflow.models.flavor_backend_registry import get_flavor_backend

    backend = get_flavor_backend(
        args.model_path, env_manager=args.env_manager, workers=args.workers
    )
    print(f"steward: preparing the model's {args.env_manager} environment", flush=True)
    backend.prepare_env(args.model_path)
    print("steward: starting the scoring server", flush=True)
    backend.serve(args.model_path, args.port, args.host, args.timeout, synchronous=True)


if __name__ == "__main__":
    main()
