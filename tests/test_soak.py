"""A small soak in CI: jobs through worker and server processes that are killed, frozen and cut off
(the full one is bench/bench_soak.py). Nothing accepted may be lost, stuck, completed twice or corrupt."""

import pytest

from bench.bench_soak import soak


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_small_soak_loses_nothing(db, tmp_path, request):
    if db == "postgres":
        request.getfixturevalue("pg_url")  # skips without a PostgreSQL server
    # faults every 0.3-0.8 s, so that several land while 30 small jobs run on however fast a machine
    report = soak(db, jobs=30, workers=2, lease_s=2.0, limit_s=300, seed=7, work=tmp_path, fault_gap_s=(0.3, 0.8))
    assert report.jobs == 30 and sum(report.faults.values()) >= 3, report.faults
    assert (report.lost, report.stuck, report.twice, report.corrupt) == (0, 0, 0, 0), report.problems
    assert report.failed == 0, report.problems
