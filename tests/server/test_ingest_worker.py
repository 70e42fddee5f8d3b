"""A worker's group commit: a request is answered only once a flush that began after its rows
were appended has ended, so a reader opened then sees every row of every answered request."""

from __future__ import annotations

import threading
from pathlib import Path

from kronicler.db import Database, SpanBatch
from kronicler.server.ingest_worker import GroupCommit, Outcome, committed


def test_every_row_of_an_answered_request_is_visible_to_a_reader_opened_then(
    tmp_path: Path,
) -> None:
    rounds: list[int] = []
    failures: list[str] = []
    with Database.open(tmp_path / "db", flush_interval=60) as db:
        commit = GroupCommit(db, after=lambda r: rounds.append(r.members))

        def client(t: int) -> None:
            for i in range(25):
                first = (t * 25 + i) * 4
                db.append_batch(SpanBatch.build([f"f{t}"] * 4, list(range(first, first + 4)),
                                                [1, 2, 3, 4]))  # fmt: skip
                outcome = committed(Outcome("ok"), commit.join(direct=t == 0), 30.0)
                if outcome.code != "ok":
                    failures.append(outcome.message)
                    continue
                with Database.open(tmp_path / "db", readonly=True) as reader:
                    seen = reader.stats(f"f{t}").count
                if seen < 4 * (i + 1):  # flush_interval=60: only the round's flush wrote them
                    failures.append(f"client {t} request {i}: {seen} rows visible")

        threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        commit.close()
    assert not failures, failures[:5]
    assert sum(rounds) == 100  # every request was in exactly one round
    assert committed(Outcome("invalid", message="x"), None, 0.0) == Outcome("invalid", message="x")
