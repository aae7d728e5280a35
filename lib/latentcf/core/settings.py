"""Chapter settings: one frozen dataclass per chapter, ``PAPER`` and ``SMOKE = replace(PAPER, ...)``.

Every field but ``scale`` starts with the *stage* it belongs to, from one vocabulary shared by all
chapters (:data:`STAGES`). A stage's fields are what its cached model or data depend on
(:func:`stage_settings`), and its wall time is recorded as ``seconds_<stage>`` by
:meth:`latentcf.core.results.Run.stage`. Introduced in ``notebooks/helix``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from latentcf.core.errors import LatentcfError, optional_import

STAGES = {
    "data": "which data, how many images, their size and split",
    "classifier": "the classifier to explain (and, in Galaxy10, the retrained ones)",
    "knn": "the k-nearest-neighbour classifier, the black box without gradients",
    "flow": "a flow: a RealNVP on the data or a CE-CFM velocity field on latents",
    "realnvp": "a RealNVP in a chapter whose 'flow' is a CE-CFM velocity field (the head-to-head MNIST chapter)",
    "vae": "a variational autoencoder",
    "cvae": "a conditional variational autoencoder (the CGM baseline)",
    "wae": "the Wasserstein autoencoder with its perceptual and adversarial losses",
    "oracle": "an independent classifier that judges counterfactuals (the SVM oracle)",
    "im1": "the class autoencoders of the IM1 realism score",
    "search": "gradient ascent in the input or a latent space",
    "leap": "LeapFactual's leaps and their ODE solver",
    "eval": "how many samples are evaluated, and in which batches",
    "table3": "the retraining runs of Galaxy10 Table 3",
    "bench": "throughput benchmarks",
}
"""The stage prefixes every chapter's settings fields use, with what each stage is."""


def stage_of(field_name: str) -> str:
    """The stage a settings field belongs to (its prefix up to the first ``_``), or raise if unknown."""
    stage = field_name.split("_", 1)[0]
    if stage not in STAGES or "_" not in field_name:
        raise LatentcfError(f"settings field '{field_name}' does not start with a known stage prefix "
                            f"({', '.join(f'{s}_' for s in STAGES)})")
    return stage


def check_settings(settings: Any) -> None:
    """Raise :class:`LatentcfError` unless ``settings`` is a dataclass with ``scale`` and stage-prefixed fields."""
    if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
        raise LatentcfError(f"chapter settings must be a dataclass instance, got {type(settings).__name__}")
    names = [field.name for field in dataclasses.fields(settings)]
    if "scale" not in names:
        raise LatentcfError(f"{type(settings).__name__} has no 'scale' field")
    for name in names:
        if name != "scale":
            stage_of(name)


def stage_settings(settings: Any, *stages: str, seed: int, **extra: Any) -> dict[str, Any]:
    """The fields of ``stages`` plus ``seed`` and ``extra``: the cache key of what those stages make.

    Example: ``stage_settings(settings, "data", "vae", seed=0)`` holds every ``data_*`` and
    ``vae_*`` field, so changing the VAE's epochs or the data retrains the VAE, and changing a
    search setting does not.
    """
    for stage in stages:
        if stage not in STAGES:
            raise LatentcfError(f"unknown stage '{stage}'; known stages: {', '.join(STAGES)}")
    fields = {name: value for name, value in dataclasses.asdict(settings).items()
              if name != "scale" and stage_of(name) in stages}
    return {**fields, "seed": seed, **extra}


def settings_table(smoke: Any, paper: Any) -> Any:
    """The chapter's settings side by side: a pandas DataFrame with columns ``smoke``, ``paper``, ``differs``.

    One row per field (``scale`` left out), values in their own types (object columns, so an
    integer stays an integer and a tuple a tuple); ``differs`` marks the rows where the smoke
    scale departs from the paper.
    """
    if type(smoke) is not type(paper):
        raise LatentcfError(f"cannot compare {type(smoke).__name__} with {type(paper).__name__}")
    pandas = optional_import("pandas", "pandas", "the settings table")
    names = [field.name for field in dataclasses.fields(paper) if field.name != "scale"]
    columns = {"smoke": [getattr(smoke, name) for name in names], "paper": [getattr(paper, name) for name in names]}
    columns["differs"] = ["●" if s != p else "" for s, p in zip(columns["smoke"], columns["paper"], strict=True)]
    index = pandas.Index(names, name="setting")
    return pandas.DataFrame({key: pandas.Series(values, index=index, dtype=object) for key, values in columns.items()})
