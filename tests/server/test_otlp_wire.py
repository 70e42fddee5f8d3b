"""The columnar OTLP decode against the stock protobuf parser, over hand-written wire bytes.

The scan (:mod:`kronicler.otel.otlp_wire`) reads spans from their bytes with numpy and hands the
unusual ones to upb one by one. Exporters write one layout, but any byte string upb accepts is
a valid request, so the requests here are written field by field: fields in any order, repeated
scalars (the last wins), repeated statuses (merged), interleaved attributes, unknown fields of
every wire type (groups too), over-long varints, two-byte tags, ids of the wrong length. The
truth is the stock ``ExportTraceServiceRequest`` parse of the same bytes, turned into rows by
the contract's rules, one span at a time. Where the C scan (``_fastrows.scan_spans``) is
built, every request is converted both ways: by it and by the numpy reference.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.common.v1 import common_pb2

from kronicler.db.schema import stored_kind
from kronicler.otel import otlp_rows, otlp_wire
from kronicler.otel.contract import (
    DEFAULT_SERVICE,
    attributes_text,
    exception_info,
    row_attributes,
    service_text,
)
from kronicler.otel.otlp_rows import convert_request, plain_attributes, resource_of
from kronicler.otel.otlp_wire import MAX_GROUPS, MAX_ROUNDS, OTHER, PAD
from kronicler.otel.rows import _fastrows

#: The scans to hold to the stock parse: the numpy reference, and the C loop where built.
SCANS = ["numpy"] + (["c"] if _fastrows is not None else [])


@contextmanager
def scan(kind: str) -> Iterator[None]:
    """Convert with the given scan (``otlp_rows`` takes the C loop from ``_fastrows``)."""
    saved = otlp_rows._fastrows
    otlp_rows._fastrows = _fastrows if kind == "c" else None
    try:
        yield
    finally:
        otlp_rows._fastrows = saved


INT64_MAX = 2**63 - 1


def varint(n: int, extra: int = 0) -> bytes:
    """``n`` (as uint64) as a varint, padded with ``extra`` redundant bytes (upb accepts up
    to 10)."""
    n &= 2**64 - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
        if not n:
            break
    out[-1] &= 0x7F
    if extra:
        out[-1] |= 0x80
        out += b"\x80" * (extra - 1) + b"\x00"
    return bytes(out)


def field(number: int, wire: int, payload: bytes | int, pad: int = 0) -> bytes:
    tag = varint(number << 3 | wire)
    if wire == 0:
        assert isinstance(payload, int)
        return tag + varint(payload, pad)
    assert isinstance(payload, bytes)
    return tag + (varint(len(payload), pad) + payload if wire == 2 else payload)


def kv(key: str, value: common_pb2.AnyValue) -> bytes:
    return common_pb2.KeyValue(key=key, value=value).SerializeToString()


VALUES = st.one_of(
    st.text(max_size=6).map(lambda s: common_pb2.AnyValue(string_value=s)),
    st.integers(-(2**63), INT64_MAX).map(lambda i: common_pb2.AnyValue(int_value=i)),
    st.booleans().map(lambda b: common_pb2.AnyValue(bool_value=b)),
    st.sampled_from([0.0, -0.0, 1.5, 1e300]).map(lambda d: common_pb2.AnyValue(double_value=d)),
    st.binary(max_size=4).map(lambda b: common_pb2.AnyValue(bytes_value=b)),
    st.just(common_pb2.AnyValue(array_value=common_pb2.ArrayValue(
        values=[common_pb2.AnyValue(int_value=1), common_pb2.AnyValue(string_value="x")]))),
    st.just(common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(
        values=[common_pb2.KeyValue(key="in", value=common_pb2.AnyValue(bool_value=True))]))),
)  # fmt: skip
ATTRIBUTE = st.builds(kv, st.sampled_from(["route", "code", "user", "exception.type"]), VALUES)
IDS = st.one_of(st.binary(min_size=16, max_size=16), st.just(bytes(16)), st.binary(max_size=17))
TIMES = st.one_of(
    st.integers(0, 2**64 - 1), st.integers(1_700_000_000_000_000_000, 1_700_000_000_001_000_000)
)
STATUS = st.one_of(
    st.just(b""),
    st.builds(lambda c: field(3, 0, c), st.sampled_from([0, 1, 2, 3, -1])),
    st.builds(lambda c, m: field(2, 2, m.encode()) + field(3, 0, c),
              st.sampled_from([1, 2]), st.text(max_size=8)),
)  # fmt: skip


def exception_event(kind: str, message: str) -> bytes:
    attrs = [kv("exception.type", common_pb2.AnyValue(string_value=kind)),
             kv("exception.message", common_pb2.AnyValue(string_value=message))]  # fmt: skip
    return (
        field(1, 1, struct.pack("<Q", 5))
        + field(2, 2, b"exception")
        + b"".join(field(3, 2, a) for a in attrs)
    )


UNKNOWN = st.one_of(
    st.builds(lambda f, v: field(f, 0, v), st.integers(17, 3000), st.integers(0, 2**64 - 1)),
    st.builds(lambda f: field(f, 1, b"\x01" * 8), st.integers(17, 3000)),
    st.builds(lambda f, b: field(f, 2, b), st.integers(17, 3000), st.binary(max_size=5)),
    st.builds(lambda f: field(f, 5, b"\x02" * 4), st.integers(17, 3000)),
    st.builds(lambda f: varint(f << 3 | 3) + field(1, 0, 7) + varint(f << 3 | 4),
              st.integers(17, 3000)),  # a group
)  # fmt: skip


@st.composite
def spans(draw: Any) -> bytes:
    """One span's wire bytes: the usual layout, or a shuffled and decorated one."""
    name = draw(st.sampled_from(["a.b", "handler", "", "ünï", "x" * 200]))
    records = [
        field(1, 2, draw(IDS)), field(2, 2, draw(IDS)[:8]),
        field(4, 2, draw(st.sampled_from([b"", bytes(8), b"\x07" * 8, b"\x01\x02"]))),
        field(5, 2, name.encode()),
        field(6, 0, draw(st.sampled_from([0, 1, 2, 5, 6, -1, 2**32 + 2]))),
        field(7, 1, struct.pack("<Q", draw(TIMES))), field(8, 1, struct.pack("<Q", draw(TIMES))),
    ]  # fmt: skip
    attrs = [field(9, 2, a) for a in draw(st.lists(ATTRIBUTE, max_size=4))]
    status = draw(STATUS)
    records += attrs + ([field(15, 2, status)] if status else [])
    if draw(st.booleans()):  # the SDK's flags: a two-byte tag
        records.append(field(16, 5, b"\x01\x03\x00\x00"))
    if draw(st.integers(0, 4)) == 0:  # events: an exception, another event
        records.append(field(11, 2, exception_event(draw(st.text(max_size=5)), "boom")))
        records.append(field(11, 2, field(2, 2, b"note")))
    if draw(st.integers(0, 3)) == 0:
        records.append(field(3, 2, b"vendor=1"))  # trace_state
        records.append(field(13, 2, field(1, 2, bytes(16)) + field(2, 2, bytes(8))))  # a link
        records.append(field(10, 0, 3))  # dropped attributes
    if draw(st.integers(0, 2)) == 0:  # anything goes
        records += draw(st.lists(UNKNOWN, max_size=3))
        records += draw(st.lists(st.sampled_from([
            field(5, 2, b"renamed"), field(6, 0, 3), field(15, 2, field(2, 2, b"msg")),
            field(7, 1, struct.pack("<Q", 1_700_000_000_000_000_000)),
            field(9, 2, kv("late", common_pb2.AnyValue(int_value=1))),
            field(2, 2, b"\x09" * 8, pad=2), field(6, 0, 4, pad=3),
        ]), max_size=3))  # fmt: skip
        records = draw(st.permutations(records))
    return b"".join(records)


def request(resources: list[tuple[str | None, list[list[bytes]]]]) -> bytes:
    """An ``ExportTraceServiceRequest`` of resources (service name, scopes of span bytes)."""
    out = b""
    for service, scopes in resources:
        resource = b"" if service is None else field(1, 2, kv(
            "service.name", common_pb2.AnyValue(string_value=service)))  # fmt: skip
        body = field(1, 2, resource) + b"".join(
            field(2, 2, b"".join(field(2, 2, s) for s in scope)) for scope in scopes
        )
        out += field(1, 2, body)
    return out


def expected_rows(data: bytes) -> list[dict[str, Any]]:
    """The rows of the well-formed spans, from the stock parse, one span at a time."""
    rows = []
    for rs in otlp.ExportTraceServiceRequest.FromString(data).resource_spans:
        service = service_text(plain_attributes(rs.resource.attributes).get("service.name"),
                               DEFAULT_SERVICE)  # fmt: skip
        for ss in rs.scope_spans:
            for s in ss.spans:
                end, start = s.end_time_unix_nano, s.start_time_unix_nano
                if not (len(s.trace_id) == 16 and any(s.trace_id) and len(s.span_id) == 8
                        and any(s.span_id) and len(s.parent_span_id) in (0, 8) and s.name
                        and 0 < start <= INT64_MAX and start <= end
                        and end - start <= INT64_MAX and 0 <= s.kind <= 5
                        and 0 <= s.status.code <= 2):  # fmt: skip
                    continue
                exception = None
                for event in s.events:
                    if event.name == "exception":
                        exception = exception_info(plain_attributes(event.attributes))
                attrs = plain_attributes(s.attributes)
                added = row_attributes(attrs, exception=exception, status=s.status.code,
                                       description=s.status.message)  # fmt: skip
                rows.append({
                    "name": s.name, "service": service, "start": start, "duration": end - start,
                    "status": s.status.code, "kind": int(stored_kind(np.array([s.kind]))[0]),
                    "trace": int.from_bytes(s.trace_id, "big"),
                    "span": int.from_bytes(s.span_id, "big"),
                    "parent": int.from_bytes(s.parent_span_id or bytes(8), "big"),
                    "attributes": attributes_text(attrs if added is None else added),
                    "resource": resource_of(rs.resource)[1],
                })  # fmt: skip
    return rows


def stored_rows(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The rows the conversion stores (the same by every scan) and how many it rejected."""
    results = []
    for kind in SCANS:
        with scan(kind):
            results.append(_stored_rows(data))
    assert all(r == results[0] for r in results[1:])
    return results[0]


def _stored_rows(data: bytes) -> tuple[list[dict[str, Any]], int]:
    converted = convert_request(data)
    b = converted.batch
    rows = [
        {"name": b.names[i], "service": b.services[i], "start": int(b.start[i]),
         "duration": int(b.duration[i]), "status": int(b.status[i]), "kind": int(b.kind[i]),
         "trace": int(b.trace_hi[i]) << 64 | int(b.trace_lo[i]), "span": int(b.span_id[i]),
         "parent": int(b.parent_span_id[i]), "attributes": b.attributes[i],
         "resource": b.resources[i]}
        for i in range(len(b))
    ]  # fmt: skip
    return rows, converted.rejected


def spans_in(data: bytes) -> int:
    return sum(len(ss.spans) for rs in otlp.ExportTraceServiceRequest.FromString(data)
               .resource_spans for ss in rs.scope_spans)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(
    st.sampled_from([None, "shop", ""]),
    st.lists(st.lists(spans(), max_size=6), max_size=3)), max_size=3))  # fmt: skip
def test_any_wire_layout_gives_the_rows_of_the_stock_parse(resources: Any) -> None:
    data = request(resources)
    want = expected_rows(data)
    got, rejected = stored_rows(data)
    assert got == want
    assert rejected == spans_in(data) - len(want)


def test_the_usual_layout_and_its_variants_in_one_request() -> None:
    """Many spans at once: the scan's groups of tags, and spans parsed alone, side by side."""
    rng = np.random.default_rng(7)
    scope = []
    for i in range(600):
        trace, sid = rng.bytes(16), rng.bytes(8)
        start = 1_700_000_000_000_000_000 + i
        body = [field(1, 2, trace), field(2, 2, sid), field(5, 2, f"f{i % 7}".encode()),
                field(6, 0, i % 6), field(7, 1, struct.pack("<Q", start)),
                field(8, 1, struct.pack("<Q", start + 1000 * i))]  # fmt: skip
        body += [field(9, 2, kv(f"k{j}", common_pb2.AnyValue(int_value=i % 3)))
                 for j in range(i % 5)]  # fmt: skip
        if i % 11 == 0:
            body.reverse()
        if i % 13 == 0:  # more fields than the scan reads: parsed alone
            body += [field(9, 2, kv("many", common_pb2.AnyValue(int_value=j)))
                     for j in range(MAX_ROUNDS)]  # fmt: skip
        if i % 17 == 0:  # an unknown field of its own number: more tags in a round than groups
            body.insert(2, field(100 + i, 0, 1))
        scope.append(b"".join(body))
    data = request([("svc", [scope[:300], scope[300:]])])
    got, rejected = stored_rows(data)
    assert rejected == 0 and got == expected_rows(data)
    assert len({100 + i for i in range(0, 600, 17)}) > MAX_GROUPS


@pytest.mark.parametrize("bad", [
    field(5, 2, b"\xff\xfe"),  # a name that is not UTF-8
    field(3, 2, b"\xc3"),  # trace_state, not stored, yet checked
    field(13, 2, field(3, 2, b"\xff")),  # a link's trace_state
    field(9, 2, b"\x0a\x05ab"),  # an attribute cut short
    field(1, 2, b"abc")[:-1],  # a span cut short
])  # fmt: skip
def test_malformed_bytes_anywhere_in_a_span_fail_the_request(bad: bytes) -> None:
    from google.protobuf.message import DecodeError

    good = field(1, 2, b"\x01" * 16) + field(2, 2, b"\x02" * 8) + field(5, 2, b"ok")
    with pytest.raises(DecodeError):
        convert_request(request([("svc", [[good, good + bad]])]))


BASE = [field(1, 2, b"\x01" * 16), field(2, 2, b"\x02" * 8), field(5, 2, b"f"),
        field(7, 1, struct.pack("<Q", 10)), field(8, 1, struct.pack("<Q", 20))]  # fmt: skip
ROUTE = field(9, 2, kv("route", common_pb2.AnyValue(string_value="/a")))
CODE = field(9, 2, kv("code", common_pb2.AnyValue(int_value=500)))


@pytest.mark.parametrize("extra", [
    [field(15, 2, field(3, 0, 2)), field(15, 2, field(2, 2, b"why"))],  # statuses merge
    [field(15, 2, field(2, 2, b"why")), field(15, 2, field(3, 0, 2))],
    [ROUTE, field(5, 2, b"g"), CODE],  # attributes interleaved
    [CODE, ROUTE, CODE],
    [field(5, 2, b"g"), field(5, 2, b"h")],  # the last name wins
    [field(6, 5, b"\x02\x00\x00\x00")],  # kind of another wire type: an unknown field
    [field(6, 0, -2)],  # a negative kind: rejected
    [field(6, 0, 2, pad=4), field(5, 2, b"padded", pad=3)],  # over-long varints
    [varint(5000 << 3 | 0) + b"\x01"],  # a three-byte tag
    [varint(40 << 3 | 3) + field(1, 2, b"x") + varint(40 << 3 | 4)],  # a group
    [field(16, 5, b"\x01\x00\x00\x00"), ROUTE],  # a two-byte tag, then attributes
    [field(11, 2, exception_event("E", "boom")), field(15, 2, field(3, 0, 2))],
])  # fmt: skip
def test_each_unusual_layout_gives_the_stock_row(extra: list[bytes]) -> None:
    usual = BASE + [field(9, 2, kv("n", common_pb2.AnyValue(int_value=1)))]
    for body in (BASE + extra, extra + BASE, usual):  # unusual spans among usual ones
        data = request([("svc", [[b"".join(usual), b"".join(body), b"".join(usual)]])])
        got, rejected = stored_rows(data)
        assert got == expected_rows(data)
        assert rejected == 3 - len(got)


def _tables(kind: str, raw: list[bytes]) -> otlp_wire.SpanFields:
    end = np.cumsum([len(r) for r in raw], dtype=np.int64)
    start = np.concatenate(([0], end[:-1])).astype(np.int64)
    data = np.frombuffer(b"".join(raw) + bytes(PAD), dtype=np.uint8)
    with scan(kind):
        return otlp_rows.scan_spans(data, start, end)


@pytest.mark.skipif(_fastrows is None, reason="the C loop is not built")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spans(), min_size=1, max_size=12))
def test_the_c_scan_reads_the_tables_of_the_numpy_scan(raw: list[bytes]) -> None:
    # The same tables wherever the numpy scan vouches for a span; the C scan sends no other
    # span to the per-span parser, except for a tag rare in its round (the numpy scan's bound).
    want, got = _tables("numpy", raw), _tables("c", raw)
    sure = ~want.slow
    assert not got.slow[sure].any()
    for name in ("offset", "size", "kind", "events", "attrs_start", "attrs_end"):
        assert np.array_equal(getattr(got, name)[..., sure], getattr(want, name)[..., sure]), name
    assert got.offset.shape == (OTHER + 1, len(raw))


@pytest.mark.skipif(_fastrows is None, reason="the C loop is not built")
@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=8))
def test_the_c_scan_stays_inside_each_span_whatever_its_bytes(raw: list[bytes]) -> None:
    # The C scan does not trust the structure as the numpy one does (upb checked it first):
    # garbage makes spans slow, never a read or a field past the span.
    f = _tables("c", raw)
    end = np.cumsum([len(r) for r in raw])
    start = end - [len(r) for r in raw]
    present = f.size > 0
    assert (~present | ((f.offset >= start) & (f.offset + f.size <= end))).all()
    assert not present[:, f.slow].any()
    with scan("c"):
        buf = b"".join(raw) + bytes(PAD)
        data = np.frombuffer(buf, dtype=np.uint8)
        with pytest.raises(ValueError, match="out of the buffer"):
            otlp_rows.gather(data, np.array([len(buf) - 4]), 8)
        assert otlp_rows._slices(buf, start, end) == raw
