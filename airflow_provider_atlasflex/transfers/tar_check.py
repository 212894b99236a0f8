"""Old name of the tar walk, now :mod:`airflow_provider_atlasflex.archive.tar_walker` (one for copy and scrub)."""

from __future__ import annotations

from airflow_provider_atlasflex.archive.tar_walker import TarWalker as TarStreamCheck

__all__ = ["TarStreamCheck"]
