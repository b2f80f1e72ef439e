"""``steward edge``: bundles, TUF channels and their keys for the edge target.

Imports stay light here: python-tuf, MLflow and pandas are imported inside the commands.
"""

from __future__ import annotations

import click


@click.group()
def edge() -> None:
    """Build model bundles and publish them to TUF channels that edge agents read.

    A channel is a TUF repository in a folder (served over HTTP or a file share): its metadata
    is signed by root and targets keys kept offline and by snapshot and timestamp keys kept
    online, each with an expiry. Needs the edge extra: pip install 'mlflow-steward[edge]'.
    """
