"""latentcf: visual counterfactual explanations with generative models, the library of the book.

Layers, each importing only the ones before it:

- ``core``: runs and results, claims, the model cache, the training loop, settings, device and
  random streams, paths, errors, the plotting style;
- ``models`` (flows, the multi-scale RealNVP, the MNIST networks, WAE, VGG), ``methods``
  (gradient search, CE-CFM, LEAP and LeapFactual, Jacobian geometry) and ``metrics``
  (morphometrics, image similarity, target accuracy and AUROC);
- ``data`` (MNIST and its Morpho-MNIST plain form, Galaxy10 and its synthetic stand-in);
- ``chapters``: one module per chapter and the registry (``latentcf.chapters.registry``);
- ``book`` and ``cli``: execute the chapters, check the claims, build the book.

Each module is introduced by the chapter that needs it; ``lib/README.md`` shows where a new
chapter, method or model goes.
"""

from latentcf.core.errors import LatentcfError

__all__ = ["LatentcfError"]
__version__ = "0.1.0"
