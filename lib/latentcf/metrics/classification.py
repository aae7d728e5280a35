"""How often counterfactuals reach their target, and how runs are summarised.

``target_accuracy`` (ACC) and ``macro_auroc`` (AUC) are LeapFactual's validity scores (Sec. 4.1,
Table 2; Tables 3, 5 and 6 on Galaxy10); ``mean_and_sem`` summarises repeated runs as the papers
do (mean and standard error). Introduced in ``notebooks/mnist_leap``.
"""

from __future__ import annotations

import numpy as np
import torch

from latentcf.core.batching import in_batches
from latentcf.core.errors import LatentcfError, optional_import
from latentcf.core.runtime import run_options


def target_accuracy(probabilities: torch.Tensor | np.ndarray, target: torch.Tensor) -> float:
    """ACC: the fraction of counterfactuals whose predicted class is the target (micro average).

    Shapes: ``probabilities: (B, K)``, ``target: (B,)``.
    """
    predicted = torch.as_tensor(probabilities).argmax(dim=1).cpu()
    return float((predicted == target.cpu()).float().mean())


def predicted_classes(classifier: torch.nn.Module, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """``argmax f(x)`` per image, in batches, without a gradient (:func:`in_batches`). ``(N, ...) -> (N,)`` int64."""
    return in_batches(lambda chunk: classifier(chunk).argmax(1), images, batch)


def recognised_examples(classifier: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, label: int, n: int,
                        generator: torch.Generator, batch: int = 1000) -> torch.Tensor:
    """Indices of ``n`` random images of class ``label`` that the classifier predicts as ``label``.

    The inputs of Dombrowski et al. Sec. 4.1.3 (test 4s the classifier calls 4). In a dry run, whose
    classifier is trained for two steps, any images of the class where too few are recognised; too
    few otherwise raise :class:`LatentcfError`. The choice is ``randperm`` of the candidates, in
    index order, drawn from ``generator``.

    Shapes: ``images: (N, ...)``, ``labels: (N,)`` -> ``(n,)`` int64 on the CPU.
    """
    of_class = labels == label
    candidates = (of_class & (predicted_classes(classifier, images, batch) == label)).nonzero().squeeze(1).cpu()
    if len(candidates) < n and run_options().dry_run:
        candidates = of_class.nonzero().squeeze(1).cpu()
    if len(candidates) < n:
        raise LatentcfError(f"only {len(candidates)} test images of class {label} are predicted as {label}, "
                            f"{n} requested")
    return candidates[torch.randperm(len(candidates), generator=generator)[:n]]


def macro_auroc(probabilities: torch.Tensor | np.ndarray, target: torch.Tensor, num_classes: int) -> float:
    """AUC: the macro average over classes of the one-vs-rest ROC AUC of ``p_k`` for "target is k".

    Shapes: ``probabilities: (B, K)``, ``target: (B,)``. As torcheval's ``MulticlassAUROC`` in the
    official LeapFactual evaluation (``Morpho_MNIST/Experiment_MorphoMNIST.ipynb``). The pitfall: a
    class that is no sample's target has no positives, its AUC is undefined and libraries differ in
    what they average in; here that raises ``ValueError`` instead of returning a number that silently
    means something else.
    """
    labels = target.cpu().numpy()
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(f"macro AUROC is undefined: class(es) {missing} are no sample's target "
                         f"(no positives); evaluate on more samples")
    scores = torch.as_tensor(probabilities).detach().cpu().double().numpy()
    metrics = optional_import("sklearn.metrics", "scikit-learn", "the macro AUROC")
    return float(np.mean([metrics.roc_auc_score(labels == k, scores[:, k]) for k in range(num_classes)]))


def mean_and_sem(runs: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard error of the mean (ddof 1) over runs, per metric; the SEM needs >= 2 runs."""
    if len(runs) < 2:
        raise ValueError(f"a standard error needs at least 2 runs, got {len(runs)}")
    values = {name: np.array([run[name] for run in runs]) for name in runs[0]}
    return ({name: float(v.mean()) for name, v in values.items()},
            {name: float(v.std(ddof=1) / np.sqrt(len(v))) for name, v in values.items()})
