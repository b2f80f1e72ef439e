"""The ``steward-onprem`` client: runs on the host that serves, starts the deployment's gateway
(which supervises the scoring servers) and talks to it through its admin API."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow_steward.deployment.onprem.ports import (
    GATEWAY_MODULE,
    TOKEN_HEADER,
    free_port,
    gateway_alive,
    log_tail,
    port_in_use,
)
from mlflow_steward.env import HOME_ENV
from mlflow_steward.errors import DeploymentError
from mlflow_steward.plugins.targets import DeploymentInfo, ResolvedModel, TargetClient


def deployments_dir(options: Mapping[str, Any]) -> Path:
    if options.get("state_dir"):
        return Path(options["state_dir"]).expanduser().resolve()
    home = os.environ.get(HOME_ENV) or os.path.join(os.path.expanduser("~"), ".mlflow-steward")
    return Path(home).resolve() / "deployments"


class OnPremClient(TargetClient):
    # -- checks ---------------------------------------------------------------------------------

    def validate(self, name: str, options: Mapping[str, Any]) -> None:
        for key, low, high in (
            ("payload_sample", 0.0, 1.0),
            ("error_rate_max", 0.0, 1.0),
            ("workers", 1, 64),
            ("rotate_rows", 1, None),
            ("error_rate_min_requests", 1, None),
        ):
            value = options[key]
            if value < low or (high is not None and value > high):
                span = f"from {low} to {high}" if high is not None else f"at least {low}"
                raise DeploymentError(f"option {key}={value}: give a value {span}")
        port = options["port"]
        if not 0 < port < 65536:
            raise DeploymentError(f"port {port} is not a TCP port (1-65535)")
        if self.context.store.get(name) is not None:
            return  # an update: the port is the running gateway's
        for other in self.context.store.list():
            if (
                other.name != name
                and other.options.get("port") == port
                and other.target == (self.target.name)
            ):
                raise DeploymentError(
                    f"port {port} is recorded for deployment {other.name!r}; choose another with "
                    "-C port=..."
                )
        if port_in_use(options["host"], port):
            raise DeploymentError(
                f"port {port} on {options['host']} is already in use; choose another with "
                "-C port=..."
            )

    # -- admin API ----------------------------------------------------------------------------

    def _admin(self, info: DeploymentInfo) -> tuple[str, dict[str, str]]:
        runtime = info.runtime
        host = info.options.get("admin_host") or "127.0.0.1"
        return (
            f"http://{host}:{runtime['admin_port']}",
            {TOKEN_HEADER: runtime["admin_token"]},
        )

    def _live(self, info: DeploymentInfo) -> dict[str, Any] | None:
        import requests

        if not info.runtime.get("admin_port"):
            return None
        url, headers = self._admin(info)
        try:
            response = requests.get(f"{url}/status", headers=headers, timeout=5)
        except requests.RequestException:
            return None
        return response.json() if response.ok else None

    def _require_live(self, info: DeploymentInfo) -> None:
        if self._live(info) is None:
            raise DeploymentError(
                f"the gateway of deployment {info.name!r} is not running; start it from the "
                f"recorded state with `steward deploy start {info.name}`"
            )

    def _call(self, info: DeploymentInfo, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST to the admin API, showing its progress lines; returns the final state."""
        import requests

        url, headers = self._admin(info)
        final: dict[str, Any] | None = None
        try:
            with requests.post(
                f"{url}{path}",
                json=dict(body),
                headers=headers,
                stream=True,
                # connect, then the whole step (a start and the health gate) plus a margin
                timeout=(10, float(info.options["start_timeout"]) + 120),
            ) as response:
                if response.status_code != 200:
                    raise DeploymentError(
                        f"the gateway of {info.name!r} answered HTTP {response.status_code}: "
                        f"{response.text[:300]}"
                    )
                for line in response.iter_lines():
                    if not line:
                        continue
                    item = json.loads(line)
                    if "progress" in item:
                        self.context.progress(item["progress"])
                    else:
                        final = item
        except requests.RequestException as exc:
            raise DeploymentError(
                f"cannot reach the gateway of deployment {info.name!r} at {url}: {exc}"
            ) from exc
        if final is None:
            raise DeploymentError(f"the gateway of {info.name!r} stopped answering mid-step")
        if not final.get("ok"):
            raise DeploymentError(final.get("error") or "the gateway refused the step")
        return final["state"]

    # -- models -------------------------------------------------------------------------------

    def _model_path(self, info: DeploymentInfo, model: ResolvedModel) -> str:
        """Download the version once into the deployment's folder (kept for restarts)."""
        base = Path(info.runtime.get("state_dir") or deployments_dir(info.options) / info.name)
        target = base / "models" / f"v{model.version}"
        if (target / "MLmodel").is_file():
            return str(target)
        self.context.progress(f"downloading {model.uri} to {target}")
        import mlflow.artifacts
        from mlflow import MlflowClient

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".v{model.version}-", dir=target.parent))
        try:
            # The version's own source, read from this registry: `models:/NAME/V` would be
            # resolved against the process's default registry instead.
            source = MlflowClient(
                self.context.tracking_uri, self.context.registry_uri
            ).get_model_version_download_uri(model.name, model.version)
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(tmp), tracking_uri=self.context.tracking_uri
            )
            if not (Path(local) / "MLmodel").is_file():
                raise DeploymentError(f"{model.requested} has no MLmodel file: not an MLflow model")
            os.replace(local, target)
        except DeploymentError:
            raise
        except Exception as exc:
            raise DeploymentError(
                f"cannot download {model.requested} (version {model.version}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return str(target)

    # -- steps --------------------------------------------------------------------------------

    def create(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo:
        state_dir = deployments_dir(info.options) / info.name
        state_dir.mkdir(parents=True, exist_ok=True)
        if info.options.get("request_log_dir"):
            # The gateway may run from another working directory (a service): make it absolute.
            info.options["request_log_dir"] = str(
                Path(info.options["request_log_dir"]).expanduser().resolve()
            )
            self.context.store.update_row(None, info.name, options=info.options)
        info.runtime = {"state_dir": str(state_dir)}
        path = self._model_path(info, model)
        info.runtime.update(
            admin_port=free_port(),
            admin_token=secrets.token_urlsafe(24),
            slots=[{"version": model.version, "model_path": path, "weight": 100}],
        )
        self.context.store.set_runtime(info.name, info.runtime)
        if not self.context.launch:
            info.status = "installed"
            info.endpoint = f"http://{info.options['host']}:{info.options['port']}"
            return info
        return self._launch(info)

    def start(self, info: DeploymentInfo) -> DeploymentInfo:
        if not info.runtime.get("slots"):
            raise DeploymentError(
                f"deployment {info.name!r} never served ({info.reason or info.status}); delete "
                "it and create it again"
            )
        if self._live(info) is not None:
            self.context.progress(f"the gateway of {info.name!r} is already running")
            return self.context.store.require(info.name)
        if gateway_alive(info.runtime.get("pid"), info.name):
            raise DeploymentError(
                f"the gateway of {info.name!r} (pid {info.runtime['pid']}) is running but its "
                "admin API does not answer; stop it first"
            )
        if port_in_use(info.options["host"], info.options["port"]):
            raise DeploymentError(
                f"port {info.options['port']} on {info.options['host']} is in use by another "
                f"process; deployment {info.name!r} cannot come back on it"
            )
        info.runtime["admin_port"] = free_port()
        self.context.store.set_runtime(info.name, info.runtime)
        return self._launch(info)

    def gateway_command(self, info: DeploymentInfo) -> list[str]:
        return [
            sys.executable,
            "-m",
            GATEWAY_MODULE,
            info.name,
            "--registry-uri",
            self.context.registry_uri,
        ]

    def _launch(self, info: DeploymentInfo) -> DeploymentInfo:
        state_dir = Path(info.runtime["state_dir"])
        log_path = state_dir / "gateway.log"
        self.context.progress(f"starting the gateway of {info.name!r} (log: {log_path})")
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                self.gateway_command(info),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives this command, like a service
            )
        deadline = time.monotonic() + float(info.options["start_timeout"]) + 60
        shown = 0
        while time.monotonic() < deadline:
            code = process.poll()
            live = self._live(info)
            if live is not None:
                new = min(live["event_count"] - shown, len(live["events"]))
                for line in live["events"][len(live["events"]) - new :] if new > 0 else []:
                    self.context.progress(line)
                shown = live["event_count"]
                if live["phase"] in ("serving", "canary"):
                    return self._result(info)
            if code is not None:
                current = self.context.store.require(info.name)
                tail = log_tail(log_path, lines=5)
                raise DeploymentError(
                    current.reason or f"the gateway exited with code {code}: {tail}"
                )
            time.sleep(0.2)
        process.terminate()  # it stops its scoring servers
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        raise DeploymentError(f"deployment {info.name!r} did not start in time; see {log_path}")

    def _result(self, info: DeploymentInfo) -> DeploymentInfo:
        current = self.context.store.require(info.name)
        live = self._live(current) or {}
        current.options = info.options
        current.status = live.get("phase", current.status)
        current.endpoint = f"http://{info.options['host']}:{info.options['port']}"
        current.traffic = live.get("traffic", current.traffic)
        current.version = live.get("version") or current.version
        current.reason = None
        return current

    def update(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo:
        self._require_live(info)
        path = self._model_path(info, model)
        self._call(
            info,
            "/rollout",
            {"version": model.version, "model_path": path, "weight": traffic or 100},
        )
        result = self._result(info)
        result.requested = model.requested
        return result

    def promote_canary(self, info: DeploymentInfo) -> DeploymentInfo:
        self._require_live(info)
        self._call(info, "/promote", {})
        return self._result(info)

    def rollback(self, info: DeploymentInfo, model: ResolvedModel | None) -> DeploymentInfo:
        self._require_live(info)
        body: dict[str, Any] = {}
        if model is not None:
            body = {"version": model.version, "model_path": self._model_path(info, model)}
        self._call(info, "/rollback", body)
        return self._result(info)

    def delete(self, info: DeploymentInfo) -> None:
        import requests

        pid = info.runtime.get("pid")
        if self._live(info) is not None:
            url, headers = self._admin(info)
            # Stopped meanwhile, or stuck: the signals below see to it.
            with contextlib.suppress(requests.RequestException):
                requests.post(f"{url}/shutdown", headers=headers, timeout=10)
            self._wait_gone(pid, info.name, 60.0)
        if pid is not None and gateway_alive(pid, info.name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            self._wait_gone(pid, info.name, 30.0)
        if pid is not None and gateway_alive(pid, info.name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _wait_gone(pid: int | None, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while gateway_alive(pid, name) and time.monotonic() < deadline:
            time.sleep(0.1)

    # -- reading ------------------------------------------------------------------------------

    def predict(self, info: DeploymentInfo, inputs: Any) -> Any:
        import pandas as pd
        import requests

        if isinstance(inputs, pd.DataFrame):
            body = '{"dataframe_split": ' + inputs.to_json(orient="split", index=False) + "}"
        elif isinstance(inputs, str | bytes):
            body = inputs
        else:
            body = json.dumps(inputs)
        endpoint = f"http://{info.options['host']}:{info.options['port']}"
        try:
            response = requests.post(
                f"{endpoint}/invocations",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=float(info.options["request_timeout"]),
            )
        except requests.RequestException as exc:
            raise DeploymentError(
                f"deployment {info.name!r} at {endpoint} did not answer: {exc}; see "
                f"`steward deploy status {info.name}`"
            ) from exc
        if response.status_code != 200:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise DeploymentError(
                f"deployment {info.name!r} refused the request (HTTP {response.status_code}): "
                f"{message}"
            )
        predictions = response.json()
        if isinstance(predictions, dict) and "predictions" in predictions:
            predictions = predictions["predictions"]
        return pd.DataFrame(predictions)

    def health(self, info: DeploymentInfo) -> dict[str, Any]:
        import requests

        endpoint = f"http://{info.options['host']}:{info.options['port']}"
        try:
            response = requests.get(f"{endpoint}/ping", timeout=5)
        except requests.RequestException as exc:
            return {"healthy": False, "detail": f"{endpoint} does not answer: {exc}"}
        return {
            "healthy": response.status_code == 200,
            "detail": f"/ping HTTP {response.status_code}",
        }

    def status(self, info: DeploymentInfo) -> dict[str, Any]:
        live = self._live(info)
        out: dict[str, Any] = {
            "health": self.health(info),
            "gateway": "running" if live else "down",
        }
        if live:
            out.update(
                phase=live["phase"],
                version=live["version"],
                canary=live["canary"],
                traffic=live["traffic"],
                slots=live["slots"],
                requests=sum(s["requests"] for s in live["slots"]),
                errors=sum(s["errors"] for s in live["slots"]),
            )
            total = out["requests"]
            out["error_rate"] = round(out["errors"] / total, 4) if total else 0.0
        return out
