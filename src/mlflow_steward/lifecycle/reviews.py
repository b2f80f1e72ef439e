"""Reviews (approval requests, approvals, rejections) from the command line, against a local
registry database or through a governed server's REST endpoints.

With a server (``http(s)://`` tracking or registry URI) the server decides and records, with the
identity it authenticated; steward on the client holds no governance of its own there.
"""

from __future__ import annotations

from typing import Any

from mlflow_steward import _mlflow_adapter
from mlflow_steward.errors import LifecycleError
from mlflow_steward.registry import parse_model_uri

API = "/api/2.0/steward/approvals"


def is_server_uri(uri: str) -> bool:
    return uri.split(":", 1)[0].lower() in ("http", "https")


class ServerReviews:
    """The steward endpoints of a governed MLflow server."""

    def __init__(self, server_uri: str) -> None:
        self.server_uri = server_uri

    def _name_version(self, model_uri: str) -> tuple[str, str]:
        ref = parse_model_uri(model_uri)
        if ref.name is None:  # not ref.registered
            raise LifecycleError(f"{model_uri!r} is not a registered model version")
        if ref.version:
            return ref.name, ref.version
        assert ref.alias is not None  # a registered URI names a version or an alias
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.server_uri, registry_uri=self.server_uri)
        return ref.name, str(client.get_model_version_by_alias(ref.name, ref.alias).version)

    def review(
        self, model_uri: str, *, alias: str, verdict: str, comment: str, action: str = "set_alias"
    ) -> dict[str, Any]:
        name, version = self._name_version(model_uri)
        payload = {
            "name": name,
            "version": version,
            "alias": alias,
            "comment": comment,
            "action": action,
        }
        response = _mlflow_adapter.server_rest_call(
            self.server_uri, "POST", f"{API}/{verdict}", payload
        )
        return response["decision"]

    def reviews(self, model: str | None = None) -> list[dict[str, Any]]:
        params = {"name": model} if model else {}
        return _mlflow_adapter.server_rest_call(self.server_uri, "GET", API, params)["reviews"]


class LocalReviews:
    """The registry database itself, through a governed session."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def review(
        self, model_uri: str, *, alias: str, verdict: str, comment: str, action: str = "set_alias"
    ) -> dict[str, Any]:
        return self.session.review(
            model_uri, alias=alias, verdict=verdict, comment=comment, action=action
        ).to_dict()

    def reviews(self, model: str | None = None) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.session.reviews(model=model)]
