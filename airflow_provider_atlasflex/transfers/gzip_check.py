"""Old name of the gzip walk, now :mod:`airflow_provider_atlasflex.archive.gzip_walker` (one for copy and scrub)."""

from __future__ import annotations

from airflow_provider_atlasflex.archive.gzip_walker import GzipWalker as GzipStreamCheck
from airflow_provider_atlasflex.archive.gzip_walker import inflater

__all__ = ["GzipStreamCheck", "inflater"]
