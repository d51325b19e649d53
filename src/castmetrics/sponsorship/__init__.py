"""Sponsorship: sponsors, campaigns and their stage machine, IO bookings (insertion orders)."""
