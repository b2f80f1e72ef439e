"""The edge target: self-contained model bundles delivered through TUF channels.

- :mod:`.bundle` builds a bundle (one archive: the MLflow model, pinned requirements, the
  version's content digest, the input example, baseline column summaries, a manifest).
- :mod:`.keys` keeps a channel's signing keys (PEM files or ``STEWARD_EDGE_KEY_<ROLE>``
  variables; root and targets kept offline).
- :mod:`.channel` writes a channel: a TUF repository (python-tuf's Metadata API) in a folder or
  under an S3 prefix (:mod:`.storage`), published atomically for readers (new files, then
  ``timestamp.json``).
- :mod:`.reader` reads a channel as a device does, through python-tuf's ``ngclient`` updater.
- :mod:`.rollout` decides which devices a staged release reaches, and when.

python-tuf and securesystemslib are the ``edge`` extra: nothing here imports them at module level
outside :mod:`.channel`, :mod:`.keys` and :mod:`.reader`, which are imported only when an edge
command or the ``steward-edge`` target runs (:func:`require_tuf` says what to install). boto3
(the ``s3`` extra) is imported only when an S3 channel is used.
"""

from __future__ import annotations

from mlflow_steward.errors import DeploymentError

INSTALL_HINT = "pip install 'mlflow-steward[edge]'"


def require_tuf() -> None:
    """Raise a :class:`DeploymentError` naming the extra to install when python-tuf is missing."""
    try:
        import securesystemslib.signer  # noqa: F401
        import tuf.api.metadata  # noqa: F401
    except ImportError as exc:
        raise DeploymentError(
            f"the edge target needs python-tuf 7 and securesystemslib[crypto] ({exc}): "
            f"{INSTALL_HINT}"
        ) from None
