"""Apache Airflow provider for MongoDB Atlas flex-cluster backup exports.

Import the classes from their modules (``airflow_provider_atlasflex.hooks.atlas_flex`` and so on);
this package imports nothing heavy so DAG files stay fast to parse.
"""

from __future__ import annotations

from airflow_provider_atlasflex.version import __version__

__all__ = ["__version__"]
