"""The download links one transfer task uses, and fresh ones from other DOWNLOAD restore jobs for its snapshot.

Why: a snapshot link expires (its restore job's ``expirationDate``), and the storage host may
refuse one mid-copy. The transfer then needs another link for the same snapshot, from a restore
job it has not used yet: a live one Atlas already has, or a new one it asks for. Which jobs' links
a task has used, and when each link it saw expires, is remembered here so a "fresh" link is never
one that already failed, also when a lost POST answer is reconciled with the job list.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_provider_atlasflex.compat import mask_secret
from airflow_provider_atlasflex.exceptions import AtlasNotFoundError, RestoreJobFailedError, SnapshotLinkExpiredError

if TYPE_CHECKING:
    from airflow_provider_atlasflex.hooks.atlas_flex import AtlasFlexHook
    from airflow_provider_atlasflex.transfers.download_terms import SnapshotLink


class SnapshotLinks:
    """Links seen and used by one task, starting from restore job ``restore_job_id``.

    :param refresh_timeout: seconds to wait for a fresh link to become ready.
    :param poll_interval: seconds between looks at a restore job whose link is not ready yet.
    :param log: the task's logger.
    """

    def __init__(self, restore_job_id: str, *, refresh_timeout: float, poll_interval: float, log: Any) -> None:
        self.used_job_ids = {restore_job_id}  # never handed out again as a "fresh" link
        self.expiries: dict[str, float] = {}  # when each link expires (epoch seconds), from expirationDate
        self.refresh_timeout = refresh_timeout
        self.poll_interval = poll_interval
        self.log = log

    def remember(self, job: dict[str, Any]) -> None:
        """Note ``job`` as used, and when its link expires."""
        from airflow_provider_atlasflex.restore_jobs import parse_atlas_time

        if isinstance(job.get("id"), str):
            self.used_job_ids.add(job["id"])
        expires = parse_atlas_time(job.get("expirationDate"))
        if isinstance(job.get("snapshotUrl"), str) and expires is not None:
            self.expiries[job["snapshotUrl"]] = expires.timestamp()

    def first(
        self, hook: AtlasFlexHook, job: dict[str, Any], cluster: str, snapshot_id: str, group_id: str
    ) -> tuple[str, bool]:
        """The ready restore job's own link, or one fresh link when it expired; and whether it may be refreshed later.

        A fresh link in place of an expired one is the one refresh: the download may not ask for another.
        """
        from airflow_provider_atlasflex.restore_jobs import ready_snapshot_url

        try:
            url = ready_snapshot_url(job, cluster)
        except RestoreJobFailedError as exc:
            if "expired" not in str(exc):
                raise
            url = None
        if url is None:  # expired (or never ready): one fresh link, and no second refresh later
            return self.fresh(hook, cluster, snapshot_id, group_id, reason="the link had expired"), False
        return url, True

    def link(self, url: str) -> SnapshotLink:
        """``url`` with its expiry, when known, for the download."""
        from airflow_provider_atlasflex.transfers.download_terms import SnapshotLink

        return SnapshotLink(url, self.expiries.get(url))

    def replacement(
        self, hook: AtlasFlexHook, cluster: str, snapshot_id: str, group_id: str, why: str
    ) -> SnapshotLink:
        """A link from a NEW restore job, for a link the storage host refused or that is about to expire."""
        return self.link(self.fresh(hook, cluster, snapshot_id, group_id, reason=f"the link {why}", reuse=False))

    def fresh(
        self, hook: AtlasFlexHook, cluster: str, snapshot_id: str, group_id: str, *, reason: str, reuse: bool = True
    ) -> str:
        """Wait (bounded) for the link of another DOWNLOAD job for the same snapshot.

        With ``reuse`` a live job this task has not used yet may serve; otherwise (after a refusal,
        or before expiry) a new job is requested. Jobs this task already used are never returned,
        also when a lost POST answer is reconciled with the job list.
        """
        from airflow_provider_atlasflex.restore_jobs import ready_snapshot_url

        self.log.warning("Requesting a fresh link for snapshot %s of %s: %s", snapshot_id, cluster, reason)
        job = self._unused_live_job(hook, cluster, snapshot_id, group_id) if reuse else None
        if job is None:
            from airflow_provider_atlasflex.hooks import operations as ops

            try:
                job = hook.run(
                    ops.download_snapshot(group_id, cluster, snapshot_id),
                    reconcile=lambda: self._unused_live_job(hook, cluster, snapshot_id, group_id),
                )
            except AtlasNotFoundError as exc:
                if exc.error_code in ("CLUSTER_NOT_FOUND", "GROUP_NOT_FOUND"):
                    raise
                raise AtlasNotFoundError(
                    f"Snapshot {snapshot_id} of cluster {cluster!r} in project {group_id} is gone from Atlas "
                    f"(HTTP 404 {exc.error_code}), and this copy needed a new link for it ({reason}). Flex snapshots "
                    "are kept 8 days: clear the task that requested the download (it takes the newest snapshot), "
                    "then this copy task.",
                    status=exc.status, error_code=exc.error_code, detail=exc.detail, reason=exc.reason,
                    parameters=exc.parameters, operation=exc.operation, retry_after=exc.retry_after,
                ) from None
        if not isinstance(job, dict) or not isinstance(job.get("id"), str) or job["id"] in self.used_job_ids:
            got = f"restore job {job.get('id')}, which this task already used" if isinstance(job, dict) else "no job"
            raise SnapshotLinkExpiredError(
                f"asked Atlas for a new DOWNLOAD restore job for snapshot {snapshot_id} of {cluster!r} ({reason}) "
                f"but got {got}. Clear the copy task to try again."
            )
        deadline = time.monotonic() + float(self.refresh_timeout)
        while True:
            url = ready_snapshot_url(job, cluster)
            if url:
                self.remember(job)
                mask_secret(url)
                return url
            if time.monotonic() >= deadline:
                raise SnapshotLinkExpiredError(
                    f"a fresh link for snapshot {snapshot_id} of {cluster!r} (restore job {job.get('id')}) was not "
                    f"ready within link_refresh_timeout={self.refresh_timeout:g} s"
                )
            time.sleep(float(self.poll_interval))
            job = hook.get_restore_job(cluster, job["id"], group_id)

    def _unused_live_job(self, hook: AtlasFlexHook, cluster: str, snapshot_id: str, group_id: str) -> dict[str, Any] | None:
        from airflow_provider_atlasflex.restore_jobs import is_reusable_download, utcnow

        now = utcnow()
        for job in hook.list_restore_jobs(cluster, group_id):
            if job.get("id") not in self.used_job_ids and is_reusable_download(job, snapshot_id, now):
                return job
        return None
