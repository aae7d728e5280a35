"""Turning chapters into a verified book: execute them (``reproduce``), compare with the papers
(``report``, with the claims of ``latentcf.core.claims``) and build the HTML book (``build``)."""
