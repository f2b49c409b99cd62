"""Decisions about a customer: the offer set and contact policy, offer eligibility, value and adaptive propensities, the next best action."""
