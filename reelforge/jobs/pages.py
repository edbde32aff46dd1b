"""Pages and counts of the job log: the listing's and search's SQL, read in index order."""

from __future__ import annotations

import builtins

from reelforge.jobs.record import JobStatus, check_search, fold_search
from reelforge.jobs.sqlbase import SQLBase


def _statuses(statuses) -> list[str]:
    wanted = sorted({JobStatus(s).value for s in statuses or ()})
    return [] if len(wanted) == len(JobStatus) else wanted


def _status_in(wanted: list[str]) -> str:
    return f"status IN ({', '.join('?' * len(wanted))})"


def _order_by(descending: bool) -> str:
    order = "DESC" if descending else "ASC"
    return f" ORDER BY submit_time {order}, id {order}"



class ListingQueries(SQLBase):
    """``list`` and ``count``: one bounded index scan per page, whatever the size of the log."""

    def list(self, *, statuses=None, submitted_after=None, submitted_before=None, descending=True, limit=100, after=None, search=None, model_id=None):
        needle = check_search(search)
        where, args = self._where(submitted_after, submitted_before, model_id, after, descending)
        wanted = _statuses(statuses)
        if not needle:
            sql, sql_args = self._ordered("jobs.*", where, args, wanted, descending, limit)
            return [self._row(r) for r in self._read([(sql, sql_args)])]
        needle = fold_search(needle)
        order = _order_by(descending)
        # A common word fills the page from the newest jobs: look in a window of them first (its cost is
        # bounded by the page size), then ask the search index, whose cost follows the matches. Both pick
        # ids only; the rows of the page are read once, at the end.
        window, window_args = self._ordered("jobs.id, jobs.submit_time, jobs.search_text", where, args, wanted, descending, limit * self._SEARCH_WINDOW)
        page = f"SELECT * FROM jobs WHERE id IN ({{}}){order}"
        recent = page.format(f"SELECT id FROM ({window}) recent WHERE {self._CONTAINS}{order} LIMIT ?"), window_args + [needle, limit]
        matches, match_args = self._matches(needle, where + [_status_in(wanted)] if wanted else where, args + wanted)
        indexed = page.format(f"SELECT id FROM ({matches}) m{order} LIMIT ?"), match_args + [limit]
        return [self._row(r) for r in self._read([recent, indexed], enough=limit)]

    def count(self, *, statuses=None, submitted_after=None, submitted_before=None, search=None, model_id=None, cap=10_000) -> int:
        needle = check_search(search)
        where, args = self._where(submitted_after, submitted_before, model_id, None, True)
        wanted = _statuses(statuses)
        if needle:
            sql, sql_args = self._matches(fold_search(needle), where + [_status_in(wanted)] if wanted else where, args + wanted)
            sql, sql_args = f"SELECT id FROM ({sql}) m LIMIT ?", sql_args + [cap + 1]
        else:
            # A page's own query, so the same ordered index scans serve it, stopping after cap + 1 rows.
            sql, sql_args = self._ordered("jobs.submit_time, jobs.id", where, args, wanted, True, cap + 1)
        return self._read([(f"SELECT COUNT(*) AS n FROM ({sql}) counted", sql_args)])[0]["n"]

    _SEARCH_WINDOW = 20  # pages' worth of newest jobs a search looks at before it asks the index
    _CONTAINS = "instr(search_text, ?) > 0"  # search_text and the needle are both folded: an exact substring test

    @staticmethod
    def _where(submitted_after, submitted_before, model_id, after, descending) -> tuple[builtins.list[str], builtins.list]:
        where, args = ["parent_id IS NULL"], []  # shot units are part of their job, never listed
        # One bound on each side: with a cursor and a time limit on the same side, a planner bounds its
        # index scan by one of them and filters by the other, reading every row in between.
        if after is not None:
            if descending:
                if submitted_before is not None and submitted_before <= after[0]:
                    after = None
                else:
                    submitted_before = None
            elif submitted_after is not None and submitted_after >= after[0]:
                after = None
            else:
                submitted_after = None
        if submitted_after is not None:
            where.append("submit_time > ?")
            args.append(submitted_after)
        if submitted_before is not None:
            where.append("submit_time < ?")
            args.append(submitted_before)
        if model_id:
            where.append("model_id = ?")
            args.append(model_id)
        if after is not None:
            where.append("(submit_time, id) < (?, ?)" if descending else "(submit_time, id) > (?, ?)")
            args += list(after)
        return where, args

    # PostgreSQL plans a bare UNION ALL under ORDER BY ... LIMIT as a sort of every matching row;
    # a LIMIT in each branch makes it merge the branches' ordered index scans. SQLite merges either way.
    _LIMIT_EACH_BRANCH = False

    def _ordered(self, columns, where, args, wanted, descending, limit) -> tuple[str, builtins.list]:
        """A page in (submit_time, id) order read from an index in that order, stopping after ``limit`` rows."""
        order = _order_by(descending)
        if len(wanted) < 2:
            where, args = (where + ["status = ?"], args + wanted) if wanted else (where, args)
            return f"SELECT {columns} FROM jobs WHERE {' AND '.join(where)}{order} LIMIT ?", args + [limit]
        # Several statuses (Bedrock's InProgress, Failed): an ordered scan of each, merged.
        branch = f"SELECT {columns} FROM jobs WHERE {' AND '.join(where)} AND status = ?"
        branch_args = [args + [s] for s in wanted]
        if self._LIMIT_EACH_BRANCH:
            branch = f"({branch}{order} LIMIT ?)"
            branch_args = [a + [limit] for a in branch_args]
        sql = " UNION ALL ".join([branch] * len(wanted)) + f"{order} LIMIT ?"
        return sql, [a for b in branch_args for a in b] + [limit]

    def _matches(self, needle: str, where: builtins.list[str], args: builtins.list) -> tuple[str, builtins.list]:
        """(id, submit_time) of every job whose search_text contains ``needle``, found through the search index."""
        raise NotImplementedError

