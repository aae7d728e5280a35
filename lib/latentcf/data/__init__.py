"""Data sets: MNIST and its Morpho-MNIST plain form (``mnist``), Galaxy10 DECaLS and its synthetic
stand-in (``galaxy10``). Small official files the package ships lie in ``shipped/``."""
