"""The outbox of domain events: written with the change they report, published by a job."""
