"""Counterfactual methods: batched gradient ascent and the searches built on it (``search``), the CE-CFM loss
and field (``cfm``), LEAP and LeapFactual (``leap``), the CGM baseline (``cgm``) and the Jacobian geometry of a
generator (``geometry``)."""
