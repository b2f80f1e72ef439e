"""``steward quickstart``: the options of the guided demo, :mod:`mlflow_steward.demo`."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--dir",
    "folder",
    default="steward-quickstart",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the embedded registry is created.",
)
@click.option("--keep", is_flag=True, help="Reuse the folder instead of starting afresh.")
@click.option("--port", type=int, default=0, help="The deployment's port (default: a free one).")
@click.option(
    "--keep-serving", is_flag=True, help="Leave the on-prem deployment running at the end."
)
def quickstart(folder: str, keep: bool, port: int, keep_serving: bool) -> None:
    """Train, register, get refused, fix, promote, deploy, update, roll back, audit: on SQLite,
    with nothing to set up."""
    from mlflow_steward.demo import run

    run(folder, keep=keep, port=port, keep_serving=keep_serving)
