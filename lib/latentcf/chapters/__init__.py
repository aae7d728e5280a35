"""The chapters of the book: one module per chapter, and the registry that lists them.

A chapter module holds what only its notebook needs (settings, data loading, the chapter's
training and evaluation steps) and builds on ``core``, ``methods``, ``models``, ``data`` and
``metrics``; no chapter imports another. ``registry`` lists the chapters and opens their runs.
"""
