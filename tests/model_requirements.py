"""Requirements for the models tests log, named instead of inferred.

Without ``pip_requirements``, MLflow infers a model's requirements by loading it in a new Python
process and running it on the input example: about 5 s a model (6.4 s against 0.13 s, measured
for one scikit-learn model). The suite logs many models whose requirements no test reads,
so they name what MLflow's flavors pin by default. Tests about requirements themselves (the
``allowed-requirements`` policy, edge bundles' pins, offline wheels) log their own.
"""

from __future__ import annotations


def sklearn() -> list[str]:
    """A scikit-learn model's: scikit-learn, and skops and cloudpickle (the formats MLflow saves
    it in), pinned to this environment's versions, as inference would find them."""
    from mlflow_steward.demo.training import requirements

    return requirements()


def pyfunc() -> list[str]:
    """A custom ``PythonModel``'s: cloudpickle, pinned."""
    from importlib.metadata import version

    return [f"cloudpickle=={version('cloudpickle')}"]
