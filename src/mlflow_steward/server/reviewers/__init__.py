"""The reviewers' page of the governed server: ``/steward/``.

Server-rendered HTML (jinja2 templates shipped with the package, autoescaped) in the look of
MLflow's UI, served by the steward server app next to MLflow's own: pending approval requests with
each policy's verdict, approve and reject with a comment, the audit log with filters and its
verification, deployments with their versions and health, and monitoring verdicts with links to
their MLflow runs.

It decides nothing itself. A review goes through :func:`mlflow_steward.server.api.review_request`,
the code path of ``POST /api/2.0/steward/approvals/approve|reject``, as the request's
authenticated actor, so the policies (four eyes included) decide as for the REST API. Under
basic-auth, a user sees and reviews only the models the REST API would let them read
(``validate_can_read_registered_model``), admins everything. Every POST carries a per-session
CSRF token (see :mod:`.csrf`); state changes are POST only.
"""

from __future__ import annotations

from mlflow_steward.server.reviewers.views import PREFIX, register

__all__ = ["PREFIX", "register"]
