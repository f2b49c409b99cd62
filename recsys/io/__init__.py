"""What comes in.

File formats and loaders (events, UCI Online Retail), the item catalogue, the synthetic shop,
progress reporting.
"""
