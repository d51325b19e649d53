"""Measurement: the prefix, download counting by the IAB v2 rules, and who the client is."""
