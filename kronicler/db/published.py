"""Which segments a reader takes: the read side of compaction's publishing rules.

A compaction output names the segments it ``replaces``; readers ignore it until it is published
(closed, and its group whole in their listing), then ignore the replaced segments instead; of two
outputs claiming one segment, the one created first wins, whole. ``compaction.py`` has the rules
and their reasons; this module is only what a query needs of them, so that a process that only
reads loads none of the writing and maintenance code.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kronicler.db.reader import SegmentReader


def _whole(reader: SegmentReader, ids: Collection[str]) -> bool:
    """True when every segment of ``reader``'s group is in the listing ``ids``, or when none of
    the segments it replaces is any more (from then on its parts stand on their own)."""
    return all(p in ids for p in reader.parts) or not any(s in ids for s in reader.replaces)


def _published(reader: SegmentReader, ids: Collection[str]) -> bool:
    """A compaction output (alone, or the last of a group) that readers take: closed, and its
    group whole in the listing (a listing taken while the group was written may miss a part)."""
    return (
        bool(reader.replaces) and reader.part_of is None and reader.closed
        and _whole(reader, ids)
    )  # fmt: skip


def _part_shown(part: SegmentReader, by_id: Mapping[str, SegmentReader], losers: set[str]) -> bool:
    """Whether a part of a group (``part_of`` its last segment) is read.

    While the last segment is not published, its parts are not. Once the replaced segments are
    all gone, a part is read whether or not its last segment still is (a later compaction or
    retention may remove that one alone): the group was published, or it would still have them.
    """
    if not part.closed:
        return False
    leader = by_id.get(part.part_of or "")
    if leader is None:
        return not any(s in by_id for s in part.replaces)
    return _published(leader, by_id) and leader.id not in losers


def unpublished(reader: SegmentReader, by_id: Mapping[str, SegmentReader]) -> bool:
    """An output (or part of one) readers do not take: still written, or left by a dead run."""
    if reader.part_of is not None:
        return not _part_shown(reader, by_id, set())
    return bool(reader.replaces) and not _published(reader, by_id)


def claims(readers: Iterable[SegmentReader]) -> tuple[dict[str, str], set[str]]:
    """(replaced segment -> the published output that replaces it, losing outputs).

    Outputs are taken in id order (creation time); one that claims a segment an earlier output
    already claims loses, whole (with its parts): its rows are all in the winner or in segments
    still visible. A group claims through its last segment.
    """
    readers = list(readers)
    ids = {r.id for r in readers}
    owner: dict[str, str] = {}
    losers: set[str] = set()
    for r in sorted((r for r in readers if _published(r, ids)), key=lambda r: r.id):
        if any(old in owner for old in r.replaces):
            losers.add(r.id)
        else:
            owner.update(dict.fromkeys(r.replaces, r.id))
    return owner, losers


def visible(readers: Iterable[SegmentReader]) -> list[SegmentReader]:
    """The segments a query should read: unpublished, losing and replaced segments left out."""
    readers = list(readers)
    by_id = {r.id: r for r in readers}
    owner, losers = claims(readers)
    out = []
    for r in readers:
        if r.id in owner or r.id in losers:
            continue
        shown = (
            _part_shown(r, by_id, losers) if r.part_of is not None else not unpublished(r, by_id)
        )
        if shown:
            out.append(r)
    return out
