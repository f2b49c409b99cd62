"""The composition root: the ``recsys`` command wires training, the feature store and serving.

``recsys``, ``training``, ``feature_store`` and ``serving`` keep their one-way dependencies
(``serving -> feature_store -> recsys``, ``training -> recsys``); only this package may import
``training`` and ``serving`` together, because a command line that trains and serves needs both.
"""
