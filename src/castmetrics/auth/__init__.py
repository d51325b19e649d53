"""Request context: who is acting, for which tenant, with what permissions, and the dependencies that say so."""
