"""Ranking items.

Scoring one customer and many, candidate retrieval, fold-in of a new customer, top-k metrics.
"""
