"""Example workflows shipped with the provider; see the documentation's "Example DAGs" page."""
