"""Part sizes of the S3 multipart upload: flat memory, and room for any flex snapshot within S3's 10 000 parts."""

from __future__ import annotations

from airflow_provider_atlasflex.archive.s3_parts import MAX_PART_SIZE, MAX_PARTS, MIB, part_size_for


def test_parts_start_at_8_mib_and_double_every_1000_parts_up_to_64_mib():
    assert [part_size_for(n) for n in (1, 1000, 1001, 2001, 3001, MAX_PARTS)] == [
        8 * MIB, 8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB, 64 * MIB,
    ]
    assert max(part_size_for(n) for n in range(1, MAX_PARTS + 1)) == MAX_PART_SIZE


def test_10000_parts_hold_far_more_than_a_flex_cluster_snapshot():
    capacity = sum(part_size_for(n) for n in range(1, MAX_PARTS + 1))
    assert capacity > 450 * 1024 * MIB  # flex clusters store at most 5 GB
