"""Version of airflow-provider-atlasflex."""

__version__ = "0.1.0"
