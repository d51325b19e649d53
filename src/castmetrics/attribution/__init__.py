"""Attribution: which campaigns earned which conversions, under five models, and what they returned."""
