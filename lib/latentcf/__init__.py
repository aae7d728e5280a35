"""latentcf: visual counterfactual explanations with generative models, the library of the book.

Modules are introduced chapter by chapter: ``results``, ``runtime``, ``cache``, ``training``,
``flows``, ``search``, ``geometry``, ``helix`` and ``plotting`` in the helix chapter; ``cfm`` and
``leap`` and ``square`` in the square chapter; ``mnist`` (MNIST and its Morpho-MNIST "plain" form) and
``morpho`` (Morpho-MNIST morphometrics) and ``image_flows`` (the multi-scale RealNVP for 1x28x28
images) for the MNIST chapters.
"""

from latentcf.errors import LatentcfError
from latentcf.results import Run, start_run

__all__ = ["LatentcfError", "Run", "start_run"]
__version__ = "0.1.0"
