"""The platform administrator: operators who log in apart from tenants and act across them."""
