"""A page of the job log (what Client.jobs() and GET /reelforge/jobs share), on SQLite and PostgreSQL."""

import pytest

from reelforge.jobs import listing
from reelforge.errors import RequestError
from reelforge.jobs.record import JobStatus

from test_stores import record, store  # noqa: F401 - the stores' own fixture


def test_pages_follow_each_other_with_a_total_and_an_offset(store):
    for i in range(7):
        store.create(record(text=f"kite {i}" if i % 2 else f"boat {i}", submit_time=1000.0 + i))
    first = listing.list_page(store, limit=3)
    assert [r.submit_time for r in first.records] == [1006.0, 1005.0, 1004.0]
    assert (first.total, first.total_is_lower_bound, first.offset) == (7, False, 0) and first.next_token
    second = listing.list_page(store, limit=3, after=first.next_token)
    third = listing.list_page(store, limit=3, after=second.next_token)
    assert [r.submit_time for r in second.records + third.records] == [1003.0, 1002.0, 1001.0, 1000.0]
    assert (second.offset, third.offset, third.next_token) == (3, 6, None)
    store.create(record(text="kite new", submit_time=2000.0))  # a job started meanwhile does not shift a later page
    assert [r.id for r in listing.list_page(store, limit=3, after=first.next_token).records] == [r.id for r in second.records]
    kites = listing.list_page(store, search="kite", limit=2)
    assert kites.total == 4 and [r.submit_time for r in kites.records] == [2000.0, 1005.0]
    with pytest.raises(RequestError, match="^after: the token belongs to a listing with other filters"):
        listing.list_page(store, search="boat", after=kites.next_token)
    assert listing.list_page(store, statuses=[JobStatus.FAILED]).total == 0


def test_counting_stops_at_the_cap(store, monkeypatch):
    for i in range(5):
        store.create(record(submit_time=1000.0 + i))
    assert store.count(cap=3) == 4 and store.count() == 5
    monkeypatch.setattr(listing, "TOTAL_CAP", 3)
    page = listing.list_page(store, limit=2)
    assert (page.total, page.total_is_lower_bound) == (3, True)


@pytest.mark.parametrize("limit", [0, 1001])
def test_limits_and_tokens_are_checked(store, limit):
    with pytest.raises(RequestError, match="^limit: "):
        listing.list_page(store, limit=limit)
    with pytest.raises(RequestError, match="^after: 'garbage' is not a page token"):
        listing.list_page(store, after="garbage")
