"""Logging the demo's models to MLflow, and step 1: the first three models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from mlflow_steward.demo.data import DemoData, Estimator

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo


def log_model(
    data: DemoData,
    model: object,
    run_name: str,
    *,
    fitted: Estimator,
    signature: bool = True,
    baseline: bool = False,
    **options: object,
) -> tuple[ModelInfo, float]:
    """Logs ``model`` in a run of its own with the accuracy of ``fitted`` (``model`` itself, or
    the fitted model it wraps) on the test split; with ``signature``, also a signature and an
    input example; with ``baseline``, the training data as the monitoring baseline."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    import mlflow_steward as steward

    with mlflow.start_run(run_name=run_name):
        accuracy = float(fitted.score(data.X_test, data.y_test))
        mlflow.log_metric("accuracy", accuracy)
        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(data.X_test, fitted.predict(data.X_test))
            if signature
            else None,
            input_example=data.X_test.head(3) if signature else None,
            pip_requirements=requirements(),
            **options,
        )
        if baseline:
            steward.log_baseline(
                data.X_train, data.y_train, fitted.predict(data.X_train), model_info=logged
            )
    return logged, accuracy


def requirements() -> list[str]:
    """The demo models' requirements: scikit-learn and the two formats MLflow saves its models
    in (skops, cloudpickle), pinned to the installed versions, as MLflow pins them. Named rather
    than inferred: MLflow infers a model's requirements by loading it in a new Python process,
    about 5 s for each of the quickstart's models."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("scikit-learn", "skops", "cloudpickle"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:  # skops: not a dependency of every MLflow release
            continue
    return pins


@dataclass(frozen=True)
class FirstModels:
    """The runs' model URIs of step 1."""

    unsigned: str
    good: str
    weak: str


def train_first_models(data: DemoData) -> FirstModels:
    """Step 1 (after its title): a logistic regression logged without a signature, the same with
    one, and a coin flip."""
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def train(model: Estimator, *, signature: bool, label: str) -> str:
        logged, accuracy = log_model(
            data, data.fit(model), label, fitted=model, signature=signature
        )
        click.echo(
            f"    {label}: accuracy={accuracy:.3f}, signature={'yes' if signature else 'no'}"
        )
        return f"runs:/{logged.run_id}/model"

    return FirstModels(
        unsigned=train(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
            signature=False,
            label="logreg-unsigned",
        ),
        good=train(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
            signature=True,
            label="logreg",
        ),
        weak=train(
            DummyClassifier(strategy="uniform", random_state=0), signature=True, label="coin-flip"
        ),
    )
