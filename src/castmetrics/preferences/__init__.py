"""Email preferences: which categories of email each user receives, and signed unsubscribe links."""
