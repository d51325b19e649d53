"""Feature flags: global defaults set by the platform, overridden per tenant."""
