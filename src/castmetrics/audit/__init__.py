"""The audit log: who changed what, in which tenant, with a summary of the change."""
