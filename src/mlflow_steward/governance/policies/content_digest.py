"""Built-in policy ``content-digest``: what is promoted, reviewed or deployed is what was registered.

At registration the governed store records a digest of the version's artifacts (every file: the
``MLmodel``, the environment files, the model files) in the reserved tag
``steward.content_digest``. Files replaced afterwards (through the artifact proxy, on the bucket,
on disk) change the digest: a promotion, a review or a deployment of such a version is refused,
naming the files that changed. On by default.

At registration itself the policy only needs the digest to be computable: artifacts that cannot be
read are refused (fail closed), since nothing could be bound to them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import DIGEST_TAG, ActionEvent
from mlflow_steward.plugins.types import Policy, PolicyVerdict


def check(event: ActionEvent, _options: Mapping[str, Any]) -> PolicyVerdict:
    facts = event.facts
    if facts is None:
        return PolicyVerdict.deny("no model version to check")
    if event.action == "create_model_version":
        return PolicyVerdict.allow(f"artifacts hashed: {facts.content_digest}")
    recorded = facts.recorded_digest
    if recorded is None:
        return PolicyVerdict.allow(
            f"no digest was recorded at registration (no {DIGEST_TAG} tag: registered without "
            "steward or before 0.2); reviews still bind to the artifacts as they are now"
        )
    changed = facts.changed_files()
    if changed:
        return PolicyVerdict.deny(
            f"the artifacts of version {facts.version} changed since it was registered "
            f"({', '.join(changed)}); register the new artifacts as a new version; "
            f"`steward verify models:/{event.model}/{facts.version}` shows the difference"
        )
    return PolicyVerdict.allow(f"artifacts match the digest recorded at registration ({recorded})")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="content-digest",
        check=check,
        description="A version's artifacts must match the digest recorded when it was registered "
        "to be promoted, reviewed or deployed (on by default).",
        actions=frozenset(
            {
                "create_model_version",
                "set_alias",
                "transition_stage",
                "deploy",
                "request_approval",
                "approve",
            }
        ),
        enabled_by_default=True,
    )
