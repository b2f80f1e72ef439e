"""Model facts resolved from MLflow: the MLmodel file, requirements, the source run, evaluations.

Everything is read lazily and at most once per event, so a policy set that needs no run metrics
never queries the tracking store.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml

from mlflow_steward import _mlflow_adapter
from mlflow_steward.governance.timeouts import PolicyTimeout, bounded
from mlflow_steward.plugins.events import DIGEST_TAG, Approval, FactUnavailable
from mlflow_steward.registry import IS_PROMPT_TAG, alias_holder, marks_prompt

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


def model_id_of(model_id: str | None, source: str | None) -> str | None:
    """The logged model a version comes from. MLflow's SQL registry does not store ``model_id``
    (its entities return ``None``), but a version registered from a logged model has the source
    ``models:/<model_id>``."""
    if model_id:
        return model_id
    rest = source[len("models:/") :].strip("/") if source and source.startswith("models:/") else ""
    return rest if rest.startswith("m-") and "/" not in rest else None


def _tags_dict(tags: Any) -> dict[str, str]:
    if not tags:
        return {}
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    return {t.key: t.value for t in tags}


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


#: The files MLflow can build a model's Python environment from (``mlflow.utils.environment``):
#: pip's requirements, virtualenv's ``python_env.yaml`` and conda's ``conda.yaml``.
ENVIRONMENT_FILES = ("requirements.txt", "python_env.yaml", "conda.yaml")


class MissingModelFile(FactUnavailable):
    """The model has no such file (raised, not returned, so that absence is never cached)."""


# A conda match spec: name, then nothing, "=version[=build]", an operator, or " version [build]".
_CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]*)\s*(?P<rest>.*)$")


def conda_requirement(spec: str) -> str:
    """A conda dependency as a pip requirement line, so policies compare both alike.

    ``scikit_learn=1.5`` -> ``scikit-learn==1.5``, ``numpy 1.26.4 py311_0`` -> ``numpy==1.26.4``,
    ``pip<=24`` and ``torch`` unchanged. The name is canonicalized as pip does; conda's
    ``=1.5`` (strictly "1.5.*") is written ``==1.5``: a spec giving one version counts as pinned,
    like ``==``. A spec naming a channel (``conda-forge::numpy``), or using conda's bracket or
    ``|`` syntax, is returned as it is: it then is no requirement a policy can check.
    """
    from packaging.utils import canonicalize_name

    spec = spec.strip()
    match = _CONDA_SPEC.match(spec)
    if match is None or "::" in spec or "[" in spec or "|" in spec:
        return spec
    name, rest = canonicalize_name(match["name"]), match["rest"].strip()
    if not rest:
        return name
    if " " in rest:  # "version build": the build string does not change the version
        rest = rest.split()[0]
    if rest.startswith("=") and not rest.startswith("=="):
        rest = rest[1:]
    elif rest.startswith("=="):
        rest = rest[2:]
    elif rest[0] in "<>!~":
        return name + rest
    return f"{name}=={rest.split('=', 1)[0]}"  # "1.2=py_0": the build string goes


class _Unreadable(ValueError):
    """Why an environment file cannot be read (the caller names the model)."""


def _yaml_lines(source: str, relpath: str, raw: bytes) -> tuple[str, ...]:
    """The requirement lines of ``python_env.yaml`` (its ``build_dependencies`` and
    ``dependencies``, pip lines) or ``conda.yaml`` (its ``dependencies`` as
    :func:`conda_requirement` lines, then the lines of its ``{pip: [...]}`` entry), read as
    MLflow reads them. Anything else MLflow would not install from is :class:`FactUnavailable`:
    a file the policy cannot read fully must not pass as clean."""

    try:
        return _env_file_lines(relpath, raw)
    except _Unreadable as exc:
        raise FactUnavailable(
            f"{relpath} of the model at {source!r} cannot be read: {exc}"
        ) from exc


@functools.lru_cache(maxsize=256)
def _env_file_lines(relpath: str, raw: bytes) -> tuple[str, ...]:
    """:func:`_yaml_lines` by content: most models of a project carry byte-for-byte the same
    environment files, so each distinct file is parsed once per process (a YAML parse costs
    about 0.1 ms, on every registration)."""

    def bad(why: str) -> _Unreadable:
        return _Unreadable(why)

    try:
        data = yaml.load(raw.decode(), Loader=_Loader)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise bad(" ".join(str(exc).split())) from exc
    if not isinstance(data, Mapping):
        raise bad("it is not a mapping")

    def strings(key: str, value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(f"{key} is not a list of strings")
        return [v.strip() for v in value if v.strip()]

    if relpath == "python_env.yaml":
        # "python" is the interpreter's version, not a package: it is not a requirement line.
        return tuple(
            strings("build_dependencies", data.get("build_dependencies"))
            + strings("dependencies", data.get("dependencies"))
        )
    deps = data.get("dependencies")
    if deps is None:
        return ()
    if not isinstance(deps, list):
        raise bad("dependencies is not a list")
    conda: list[str] = []
    pip: list[str] = []
    for dep in deps:
        if isinstance(dep, str):
            if dep.strip():
                conda.append(conda_requirement(dep))
        elif isinstance(dep, Mapping) and set(dep) == {"pip"}:
            pip.extend(strings("the pip entry", dep["pip"]))
        else:  # MLflow refuses these too ("Invalid conda dependency")
            raise bad(f"dependency {dep!r} is neither a conda spec nor a {{pip: [...]}} list")
    return tuple(conda + pip)


def _parse_model_file(source: str, relpath: str, raw: bytes | None) -> Any:
    if relpath == "MLmodel":
        if raw is None:
            raise FactUnavailable(f"no MLmodel file at {source!r}: is this an MLflow model?")
        data = yaml.load(raw, Loader=_Loader)
        if not isinstance(data, Mapping):
            raise FactUnavailable(f"the MLmodel file at {source!r} is not a mapping")
        return _frozen(data)
    if raw is None:
        raise MissingModelFile(f"the model at {source!r} has no {relpath}")
    if relpath != "requirements.txt":
        return _yaml_lines(source, relpath, raw)
    lines = (line.split("#", 1)[0].strip() for line in raw.decode().splitlines())
    return tuple(line for line in lines if line)


@functools.lru_cache(maxsize=128)
def _parsed_content(relpath: str, raw: bytes) -> Any:
    return _parse_model_file("", relpath, raw)


def _parse_by_content(source: str, relpath: str, raw: bytes) -> Any:
    """:func:`_parse_model_file`, cached by the file's bytes: a version's ``MLmodel`` is parsed
    once however often it is promoted (parsing it costs about 0.15 ms), and a file changed since
    is parsed again because its bytes differ."""
    if len(raw) > 64 << 10:  # large files are parsed each time rather than kept
        return _parse_model_file(source, relpath, raw)
    try:
        return _parsed_content(relpath, raw)
    except FactUnavailable:
        return _parse_model_file(source, relpath, raw)  # the same error, naming the model


class MlflowContext:
    """Access to the registry (the inner, ungoverned store) and the tracking server for facts."""

    def __init__(
        self, registry_store: Any, tracking_uri: str | None, db_engine: Any = None
    ) -> None:
        self.registry = registry_store
        self.tracking_uri = tracking_uri
        self.db_engine = db_engine
        self._client: MlflowClient | None = None
        self._lock = threading.Lock()
        #: MLflow's SQL registry store: facts are read with direct queries (see _mlflow_adapter).
        self.direct = _mlflow_adapter.can_join_sessions(registry_store)

    def model_version(self, name: str, version: str) -> tuple[str | None, str | None, dict]:
        """``(source, run_id, tags)`` of a registered version; :class:`FactUnavailable` if none."""
        if self.direct:
            found = _mlflow_adapter.read_model_version(self.registry, name, str(version))
            if found is None:
                raise FactUnavailable(f"model version {name!r} {version} does not exist")
            return found
        from mlflow.exceptions import MlflowException

        try:
            mv = bounded(
                f"reading model version {name!r} {version}",
                lambda: self.registry.get_model_version(name, str(version)),
            )
        except MlflowException as exc:
            raise FactUnavailable(
                f"model version {name!r} {version} cannot be read: {exc.message}"
            ) from exc
        return mv.source, mv.run_id, _tags_dict(mv.tags)

    @functools.cached_property
    def tracking_store(self) -> Any | None:
        """The SQL tracking store, for direct reads of run metrics (``None``: use the client)."""
        return _mlflow_adapter.tracking_sql_store(self.client)

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from mlflow.tracking import MlflowClient

                self._client = MlflowClient(tracking_uri=self.tracking_uri)
            return self._client

    @functools.cached_property
    def artifact_location(self) -> Callable[[str], str]:
        """Where a logged model's artifacts live. Fixed when the model is logged, so cached."""

        @functools.lru_cache(maxsize=1024)
        def lookup(model_id: str) -> str:
            try:
                store = self.tracking_store
                if store is None:
                    return bounded(
                        f"reading logged model {model_id} from the tracking server",
                        lambda: self.client.get_logged_model(model_id).artifact_location,
                    )
                location = _mlflow_adapter.read_logged_model_location(store, model_id)
            except PolicyTimeout:
                raise
            except Exception as exc:
                raise FactUnavailable(f"cannot resolve logged model {model_id!r}: {exc}") from exc
            if location is None:
                raise FactUnavailable(
                    f"cannot resolve logged model {model_id!r}: it does not exist"
                )
            return location

        return lookup

    @functools.cached_property
    def model_document(self) -> Callable[[str, str], Any]:
        """A model file of ``source``, parsed (``MLmodel`` as YAML; ``requirements.txt``,
        ``python_env.yaml`` and ``conda.yaml`` as their requirement lines) and read-only:
        policies share it.

        What was parsed is cached: a promotion does not download the same ``MLmodel`` again.
        Artifacts are meant to be written once; files replaced afterwards are refused by the
        ``content-digest`` policy (on by default), which hashes them on every promotion. A
        ``models:/NAME@ALIAS`` source is cached by where the alias points now, never by the
        alias. A read that fails, or a file that is missing, is not cached.
        """

        @functools.lru_cache(maxsize=512)
        def parsed(source: str, relpath: str) -> Any:
            return _parse_model_file(source, relpath, self._read_model_file(source, relpath))

        def document(source: str, relpath: str) -> Any:
            if source.startswith("models:/") and "@" in source:
                source = self.location(source)  # an alias moves
            return parsed(source, relpath)

        return document

    def location(self, source: str) -> str:
        """Where the artifacts of a version's ``source`` are: a logged model's location for
        ``models:/<model id>``, the run's artifacts (or, as MLflow 3 resolves it, those of the
        run's logged model of that name) for ``runs:/<run id>/<path>``."""
        for _ in range(8):  # a registered version's source may itself be models:/...
            if not source.startswith("models:/"):
                break
            rest = source[len("models:/") :].strip("/")
            if "/" not in rest and "@" not in rest:
                return self.artifact_location(rest)
            source = self._registered_source(rest, source)
        else:
            raise FactUnavailable(f"{source!r}: models:/ sources nested too deep")
        if source.startswith("runs:/"):
            return self._run_location(source)
        return source

    def _registered_source(self, rest: str, uri: str) -> str:
        """The source of the registered version ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``
        names (what ``copy_model_version`` registers from), read from the registry."""
        from mlflow_steward.registry import canonical_version

        if "@" in rest:
            name, alias = rest.split("@", 1)
            version = alias_holder(self.registry, name, alias) or ""
            if not version:
                raise FactUnavailable(f"{uri}: no version of {name!r} holds @{alias}")
        else:
            name, _, version = rest.rpartition("/")
        try:
            version = canonical_version(version)
        except Exception as exc:
            raise FactUnavailable(f"{uri} is not a registered model version: {exc}") from exc
        source = self.model_version(name, version)[0]
        if not source:
            raise FactUnavailable(f"{uri} has no source")
        return source

    @functools.lru_cache(maxsize=256)  # noqa: B019 (one context per store, kept for its life)
    def _run_location(self, source: str) -> str:
        run_id, _, path = source[len("runs:/") :].strip("/").partition("/")
        try:
            run = self.client.get_run(run_id)
            in_run = (
                f"{run.info.artifact_uri.rstrip('/')}/{path}" if path else run.info.artifact_uri
            )
            if (
                not path
                or _mlflow_adapter.artifact_repository(in_run, self.tracking_uri).list_artifacts()
            ):
                return in_run
            name, _, rest = path.partition("/")
            for logged in self.client.search_logged_models(
                experiment_ids=[run.info.experiment_id], filter_string=f"name = '{name}'"
            ):
                if logged.source_run_id == run_id:
                    location = logged.artifact_location.rstrip("/")
                    return f"{location}/{rest}" if rest else location
        except Exception as exc:
            raise FactUnavailable(f"cannot resolve {source}: {exc}") from exc
        raise FactUnavailable(f"{source} holds no artifacts (no files, no logged model {path!r})")

    def is_local(self, source: str) -> bool:
        """Whether ``source``'s artifacts are in a local folder (read in place)."""
        return _local_path(self.location(source)) is not None

    def content_digest(self, source: str) -> tuple[Any, dict[str, bytes] | None]:
        """The :class:`~mlflow_steward.governance.digest.ContentDigest` of ``source``'s files
        as they are now (never cached: it is how a changed file is noticed), and for a local
        folder the bytes of the small files it hashed (``None`` for remote artifacts)."""
        from mlflow_steward.governance import digest

        location = self.location(source)
        local = _local_path(location)
        if local is not None:
            if not local.is_dir():
                raise FactUnavailable(f"the model at {source!r} is not a folder ({location})")
            contents: dict[str, bytes] = {}
            return digest.digest_local(local, contents), contents
        found = bounded(
            f"hashing the artifacts of {source}",
            lambda: digest.digest_artifacts(location, self.tracking_uri),
        )
        return found, None

    def manifest(self, content_digest: str) -> Mapping[str, str] | None:
        """The per-file hashes recorded behind ``content_digest`` (``None``: not recorded)."""
        if self.db_engine is None:
            return None
        from mlflow_steward.governance import manifests

        return manifests.recorded_files(self.db_engine, content_digest)

    def _read_model_file(self, source: str, relpath: str) -> bytes | None:
        source = self.location(source)
        local = _local_path(source)
        if local is not None:
            path = local / relpath
            return path.read_bytes() if path.is_file() else None

        def download() -> bytes | None:
            repo = _mlflow_adapter.artifact_repository(source, self.tracking_uri)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(repo.download_artifacts(relpath, dst_path=tmp))
                return path.read_bytes() if path.is_file() else None

        try:
            return bounded(f"downloading {relpath} from {source}", download)
        except PolicyTimeout:
            raise
        except Exception as exc:
            message = str(exc)
            if "No such file" in message or "does not exist" in message or "404" in message:
                return None
            raise FactUnavailable(f"cannot read {relpath} from {source}: {exc}") from exc


class VersionFacts:
    """Facts of one model version, existing or about to be created."""

    def __init__(
        self,
        ctx: MlflowContext,
        *,
        name: str,
        version: str | None,
        source: str | None,
        run_id: str | None,
        model_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        local_model_path: str | None = None,
        model_tags: Mapping[str, str] | None = None,
    ) -> None:
        self._ctx = ctx
        self.name = name
        self._version = version
        self.source = source
        self.run_id = run_id
        self.model_id = model_id
        self._tags = dict(tags or {})
        self._local_model_path = local_model_path
        self._model_tags = dict(model_tags) if model_tags is not None else None

    @classmethod
    def of_version(cls, ctx: MlflowContext, name: str, version: str) -> VersionFacts:
        source, run_id, tags = ctx.model_version(name, str(version))
        return cls(
            ctx,
            name=name,
            version=str(version),
            source=source,
            run_id=run_id,
            model_id=model_id_of(None, source),
            tags=tags,
        )

    @property
    def version(self) -> str | None:
        return self._version

    def _document(self, relpath: str) -> Any:
        if self._local_model_path:
            path = Path(self._local_model_path) / relpath
            raw = path.read_bytes() if path.is_file() else None
            return _parse_model_file(self._local_model_path, relpath, raw)
        if not self.source:
            raise FactUnavailable("the model version has no source to read the model from")
        hashed = self._hashed_files()
        if hashed is not None:
            # The policies read the very bytes the content digest covers (one read per file).
            raw = hashed.get(relpath)
            if raw is not None:
                return _parse_by_content(self.source, relpath, raw)
            if relpath not in self._content.files:
                return _parse_model_file(self.source, relpath, None)  # missing
        return self._ctx.model_document(self.source, relpath)

    def _hashed_files(self) -> dict[str, bytes] | None:
        """The small files of a local source as its content digest read them (hashing them now
        if it has not yet: the content-digest policy does on every promotion anyway); ``None``
        for remote sources, or when the folder cannot be hashed (then read as usual)."""
        if "_small_files" not in self.__dict__:
            self.__dict__["_small_files"] = None
            try:
                if self.source is not None and self._ctx.is_local(self.source):
                    self._content  # noqa: B018 (fills _small_files)
            except FactUnavailable:
                pass
        return self.__dict__["_small_files"]

    @cached_property
    def mlmodel(self) -> Mapping[str, Any]:
        """The version's ``MLmodel`` file (read-only)."""
        return self._document("MLmodel")

    @property
    def signature(self) -> Mapping[str, Any] | None:
        sig = self.mlmodel.get("signature")
        return sig if sig else None

    @property
    def has_input_example(self) -> bool:
        return bool(self.mlmodel.get("saved_input_example_info"))

    @cached_property
    def requirements(self) -> list[str]:
        return list(self._document("requirements.txt"))

    @cached_property
    def environment_requirements(self) -> Mapping[str, tuple[str, ...]]:
        """Requirement lines of each environment file the model has (``ENVIRONMENT_FILES``;
        absent files are left out). ``conda.yaml``'s conda specs are written as pip lines (see
        :func:`conda_requirement`). A model with none of them, or a file that cannot be parsed,
        is :class:`FactUnavailable`."""
        found = {}
        for relpath in ENVIRONMENT_FILES:
            try:
                found[relpath] = tuple(self._document(relpath))
            except MissingModelFile:
                continue
        if not found:
            raise FactUnavailable(
                f"the model at {self._local_model_path or self.source!r} has none of "
                + ", ".join(ENVIRONMENT_FILES)
            )
        return MappingProxyType(found)

    @cached_property
    def _run(self) -> Any:
        if not self.run_id:
            raise FactUnavailable("the model version has no source run")
        run_id = self.run_id
        try:
            if self._ctx.tracking_store is not None:  # a SQL read of the tracking database
                return self._ctx.client.get_run(run_id)
            return bounded(
                f"reading run {run_id} from the tracking server",
                lambda: self._ctx.client.get_run(run_id),
            )
        except PolicyTimeout:
            raise
        except Exception as exc:
            raise FactUnavailable(f"source run {self.run_id} cannot be read: {exc}") from exc

    @cached_property
    def run_metrics(self) -> Mapping[str, float]:
        run_id = self.run_id
        store = self._ctx.tracking_store if run_id else None
        if store is None or run_id is None:
            return dict(self._run.data.metrics)
        metrics = _mlflow_adapter.read_run_metrics(store, run_id)
        if metrics is None:
            raise FactUnavailable(f"source run {self.run_id} does not exist")
        return metrics

    @property
    def run_params(self) -> Mapping[str, str]:
        return dict(self._run.data.params)

    @property
    def run_tags(self) -> Mapping[str, str]:
        return dict(self._run.data.tags)

    @cached_property
    def _run_origin(self) -> tuple[str | None, str, str | None]:
        """``(info.user_id, info.artifact_uri, tags["mlflow.user"])`` of the source run: one
        light query of the tracking database when the whole run has not been read already."""
        store = self._ctx.tracking_store if self.run_id else None
        if store is not None and self.run_id and "_run" not in self.__dict__:
            origin = _mlflow_adapter.read_run_origin(store, self.run_id)
            if origin is None:
                raise FactUnavailable(f"source run {self.run_id} does not exist")
            return origin
        run = self._run
        return (
            run.info.user_id or None,
            str(run.info.artifact_uri),
            run.data.tags.get("mlflow.user"),
        )

    @property
    def author(self) -> str | None:
        user_id, _root, tag_user = self._run_origin
        return tag_user or user_id or None

    @property
    def run_artifact_uri(self) -> str:
        """The source run's artifact root (``run.info.artifact_uri``)."""
        return self._run_origin[1]

    @cached_property
    def registrant(self) -> str | None:
        """The actor steward recorded creating this version (``None`` when it was registered
        without steward)."""
        if self._version is None:
            return None
        if self._ctx.db_engine is None:
            raise FactUnavailable("no steward database to read the registrant from")
        from mlflow_steward.records.audit import AuditLog

        return AuditLog(self._ctx.db_engine).registrant(
            self.name, self._version, workspace=self.workspace
        )

    @cached_property
    def evaluation_metrics(self) -> Mapping[str, float]:
        """Metrics logged on the version's logged model (``mlflow.models.evaluate``); latest wins."""
        if not self.model_id:
            return {}
        store = self._ctx.tracking_store
        if store is not None:
            metrics = _mlflow_adapter.read_logged_model_metrics(store, self.model_id)
            if metrics is None:
                raise FactUnavailable(f"logged model {self.model_id} does not exist")
            return metrics
        model_id = self.model_id
        try:
            logged = bounded(
                f"reading logged model {model_id} from the tracking server",
                lambda: self._ctx.client.get_logged_model(model_id),
            )
        except PolicyTimeout:
            raise
        except Exception as exc:
            raise FactUnavailable(f"logged model {self.model_id} cannot be read: {exc}") from exc
        latest: dict[str, tuple[tuple[int, int], float]] = {}
        for metric in logged.metrics or ():
            stamp = (metric.timestamp or 0, metric.step or 0)
            if metric.key not in latest or stamp >= latest[metric.key][0]:
                latest[metric.key] = (stamp, metric.value)
        return {k: v for k, (_, v) in latest.items()}

    @property
    def version_tags(self) -> Mapping[str, str]:
        return self._tags

    @cached_property
    def model_tags(self) -> Mapping[str, str]:
        if self._model_tags is not None:
            return self._model_tags
        try:
            return _tags_dict(self._ctx.registry.get_registered_model(self.name).tags)
        except Exception as exc:
            raise FactUnavailable(f"registered model {self.name!r} cannot be read: {exc}") from exc

    @cached_property
    def _registered_model(self) -> tuple[int, str | None] | None:
        try:
            return _mlflow_adapter.read_registered_model(
                self._ctx.registry, self.name, IS_PROMPT_TAG
            )
        except Exception as exc:
            raise FactUnavailable(f"registered model {self.name!r} cannot be read: {exc}") from exc

    @property
    def is_prompt(self) -> bool:
        """Whether this is a prompt version: its registered model was created as a prompt (the
        ``mlflow.prompt.is_prompt`` tag MLflow's ``create_prompt`` sets, which the governed store
        lets nobody change later) and the version has one of MLflow's prompt source placeholders (a
        version of a prompt model with real artifacts is judged as a model). The version's own
        tags do not decide it: any client with EDIT could write those."""
        if self.source not in _mlflow_adapter.prompt_source_placeholders():
            return False
        if self._model_tags is not None:
            return marks_prompt(self._model_tags)
        found = self._registered_model
        return found is not None and found[1] == "true"

    @property
    def model_created(self) -> int | None:
        """The registered model's creation time in MLflow (epoch ms): its identity, which a
        model deleted and created again, or another model renamed onto the name, does not have."""
        found = self._registered_model
        return None if found is None else found[0]

    @cached_property
    def _content(self) -> Any:
        if self._local_model_path:
            from mlflow_steward.governance import digest

            return digest.digest_local(self._local_model_path)
        if not self.source:
            raise FactUnavailable("the model version has no source to hash")
        found, self.__dict__["_small_files"] = self._ctx.content_digest(self.source)
        return found

    @property
    def content_digest(self) -> str:
        return str(self._content.digest)

    @property
    def recorded_digest(self) -> str | None:
        return self.version_tags.get(DIGEST_TAG)

    def changed_files(self) -> list[str]:
        recorded = self.recorded_digest
        if recorded is None or recorded == self.content_digest:
            return []
        files = self._ctx.manifest(recorded)
        if files is None:
            return ["(the files recorded at registration are not known)"]
        from mlflow_steward.governance import digest

        return digest.ContentDigest(recorded, files, 0).changed(self._content)

    @property
    def workspace(self) -> str:
        return _mlflow_adapter.active_workspace(self._ctx.registry)

    def approvals(self, alias: str, action: str = "set_alias") -> list[Approval]:
        """Review entries of ``action`` recorded for this version and ``alias`` (oldest first)."""
        if self._version is None:
            return []
        if self._ctx.db_engine is None:
            raise FactUnavailable("no steward database to read approvals from")
        from mlflow_steward.records.approvals import list_approvals

        return list_approvals(
            self._ctx.db_engine,
            self.name,
            self._version,
            alias,
            action=action,
            workspace=self.workspace,
        )

    def alias_holder(self, alias: str) -> VersionFacts | None:
        from mlflow.exceptions import MlflowException

        try:
            holder = alias_holder(self._ctx.registry, self.name, alias)
        except MlflowException as exc:
            raise FactUnavailable(f"cannot read who holds @{alias}: {exc}") from exc
        return None if holder is None else VersionFacts.of_version(self._ctx, self.name, holder)


class RegisteredVersionFacts(VersionFacts):
    """Facts of a registered version, read from the registry only when a policy asks for one:
    an action no policy looks at (most tag writes) costs no registry read."""

    _version: str  # always known here

    def __init__(self, ctx: MlflowContext, name: str, version: str) -> None:
        self._ctx = ctx
        self.name = name
        self._version = str(version)
        self._local_model_path = None
        self._model_tags = None

    @cached_property
    def _entity(self) -> tuple[str | None, str | None, dict[str, str]]:
        return self._ctx.model_version(self.name, self._version)

    @cached_property
    def source(self) -> str | None:  # type: ignore[override]
        return self._entity[0]

    @cached_property
    def run_id(self) -> str | None:  # type: ignore[override]
        return self._entity[1]

    @cached_property
    def model_id(self) -> str | None:  # type: ignore[override]
        return model_id_of(None, self._entity[0])

    @cached_property
    def _tags(self) -> dict[str, str]:  # type: ignore[override]
        return self._entity[2]
