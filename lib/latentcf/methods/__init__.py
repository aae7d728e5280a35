"""Counterfactual methods: batched gradient ascent (``search``), the CE-CFM loss (``cfm``), LEAP and
LeapFactual (``leap``) and the Jacobian geometry of a generator (``geometry``)."""
