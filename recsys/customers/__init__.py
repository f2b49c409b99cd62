"""The customer model.

Features, online state and features, CLV, churn input and calibration, segments and journey stages,
live updates from events.
"""
