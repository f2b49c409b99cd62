"""Decisions about a customer.

The offer set and contact policy, offer eligibility, value and adaptive propensities, the next best
action.
"""
