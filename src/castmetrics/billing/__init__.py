"""Billing through Stripe: checkout, the customer portal, and the webhook that applies subscriptions."""
