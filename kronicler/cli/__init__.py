"""The ``kronicler`` command: run the server, ask it (or a local database) questions, try a demo.

Query commands (``stats``, ``top``, ``slowest``, ``series``, ``histogram``, ``functions``,
``anomalies``, ``explain``) read a local database with ``--path DIR`` or ask a server with ``--address``.
With neither, they read ``./.kronicler`` when it exists (the embedded default) and otherwise
ask the server at ``$KRONICLER_ADDRESS`` or ``127.0.0.1:4317``. Output is a table by default and
JSON with ``--json``. Errors print one line to stderr and exit with status 1 (2 for usage).
Query commands and ``dashboard`` open the database read-only: they never create or change a file,
and a directory without a database is an error ("not a Kronicler database: DIR"). ``retain``,
``compact`` and ``upgrade`` change an existing database and never create one.

Environment (read here and nowhere else): ``KRONICLER_ADDRESS``, ``KRONICLER_TOKEN``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kronicler import _config
from kronicler.cli import render
from kronicler.cli.units import format_time, in_typed_units, parse_duration, parse_time

if TYPE_CHECKING:
    from kronicler.query import Filter
    from kronicler.query.backend import QueryBackend

#: The database the commands use without --path: $KRONICLER_PATH, as the decorator writes to.
DEFAULT_PATH = Path(os.environ.get("KRONICLER_PATH", "").strip() or _config.DEFAULT_PATH)
#: One ingest process per core but one (left to queries), between 1 and 4.
DEFAULT_INGEST_WORKERS = max(1, min(4, (os.cpu_count() or 2) - 1))


def _filter_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("which calls")
    g.add_argument(
        "-f",
        "--function",
        action="append",
        default=[],
        metavar="NAME_OR_GLOB",
        help="function name or glob pattern (repeatable; default: all)",
    )
    g.add_argument("--service", help="only calls of this service")
    g.add_argument("--since", help="start of the range: 15m (ago), ISO date-time, @epoch-seconds")
    g.add_argument("--until", help="end of the range (exclusive), same forms as --since")
    g.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="attribute equality (repeatable); resource:KEY=VALUE for a resource attribute, "
        "e.g. resource:service.version=1.1",
    )


def _source_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where to ask")
    g.add_argument("--path", type=Path, help="read this database directly")
    g.add_argument("--address", help="ask the server at HOST:PORT")
    g.add_argument("--token", help="bearer token for the server (default: $KRONICLER_TOKEN)")
    g.add_argument("--tls", action="store_true", help="connect with TLS")
    g.add_argument(
        "--tls-ca", type=Path, help="CA certificate (PEM) to verify the server; implies --tls"
    )
    g.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _quantiles(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad quantile list {text!r}") from None


class _DurationArg(argparse.Action):
    """A duration option: stored in ns, and what was typed remembered for error messages."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:  # fmt: skip
        try:
            ns = parse_duration(str(values))
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        if ns <= 0:
            raise argparse.ArgumentError(self, f"must be longer than 0, got {values!r}")
        setattr(namespace, self.dest, ns)
        _typed_values(namespace)[ns] = str(values)


def _typed(fn: Any) -> Any:
    """An argparse ``type=`` from a parser raising ValueError (argparse then names the option)."""

    def parse(text: str) -> Any:
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = fn.__name__
    return parse


def _typed_values(args: argparse.Namespace) -> dict[int, str]:
    """Values (ns) the user typed as times or durations, with their text (for errors)."""
    typed = getattr(args, "typed_ns", None)
    if typed is None:
        typed = args.typed_ns = {}
    return typed


def build_parser() -> argparse.ArgumentParser:
    from kronicler import __version__
    from kronicler.query import DEFAULT_QUANTILES
    from kronicler.query.defaults import ANOMALY_LIMIT, PER_DECADE, SLOWEST_K

    parser = argparse.ArgumentParser(
        prog="kronicler", description="Find the functions that are sometimes slow."
    )
    parser.add_argument("--version", action="version", version=f"kronicler {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    qdefault = ",".join(f"{q:g}" for q in DEFAULT_QUANTILES)

    p = sub.add_parser("serve", help="run the gRPC server (queries + OTLP) on a database")
    p.add_argument(
        "--path",
        type=Path,
        default=DEFAULT_PATH,
        help="database directory (default: $KRONICLER_PATH or ./.kronicler)",
    )
    p.add_argument("--address", help="HOST:PORT to listen on (default: 127.0.0.1:4317)")
    p.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    p.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    p.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                   help="require clients to present a certificate signed by this CA (PEM; "
                        "mutual TLS, e.g. nodes admitting only their frontend)")  # fmt: skip
    p.add_argument("--token", help="require this bearer token (default: $KRONICLER_TOKEN)")
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=16 << 20,
        help="largest request accepted (default: 16 MiB)",
    )
    p.add_argument("--no-otlp", action="store_true", help="do not host the OTLP TraceService")
    p.add_argument(
        "--otlp-http",
        metavar="HOST:PORT",
        help="OTLP/HTTP address (default: the --address host, port 4318; port 0 when "
        "--address has port 0)",
    )
    p.add_argument(
        "--otlp-address",
        metavar="HOST:PORT",
        help="also take OTLP/gRPC here, in the ingest workers themselves (off the query "
        "process entirely; OTLP on --address keeps working); port 0 picks one (default: the "
        "--address host, port 4319; port 0 when --address has port 0)",
    )
    p.add_argument(
        "--no-otlp-address",
        action="store_true",
        help="take OTLP/gRPC on --address only (relayed to the ingest workers by the server "
        "process)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed to send OTLP/HTTP (repeatable; * for any)",
    )
    p.add_argument("--ingest-workers", type=int, default=DEFAULT_INGEST_WORKERS, metavar="N",
                   help="processes decoding and storing OTLP, off the query process "
                        f"(default: {DEFAULT_INGEST_WORKERS}; 0: in the server process)")  # fmt: skip
    from kronicler.server.maintenance import DEFAULT_COMPACT_EVERY

    p.add_argument("--compact-every", type=float, default=DEFAULT_COMPACT_EVERY,
                   metavar="SECONDS",
                   help="merge small finished segments in the background this often (default: "
                        f"{DEFAULT_COMPACT_EVERY:g}; 0: never)")  # fmt: skip
    p.add_argument("--http", metavar="HOST:PORT", help="also serve the web dashboard there")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name the dashboard answers besides loopback names (repeatable)")  # fmt: skip
    p.add_argument("--peers", metavar="HOST:PORT,...",
                   help="be a cluster frontend: answer every query from these nodes (merged), "
                        "store nothing and host no OTLP (docs/cluster.md)")  # fmt: skip
    p.add_argument("--peer-token", help="bearer token for the peers (default: --token)")
    p.add_argument("--peer-tls", action="store_true",
                   help="reach the peers over TLS, verified by the system's CAs")  # fmt: skip
    p.add_argument("--peer-tls-ca", type=Path, metavar="FILE",
                   help="CA certificate (PEM) the peers' certificates are verified with; "
                        "implies --peer-tls")  # fmt: skip
    p.add_argument("--peer-tls-cert", type=Path, metavar="FILE",
                   help="client certificate (PEM) shown to peers that require one (their "
                        "--tls-client-ca); needs --peer-tls-key")  # fmt: skip
    p.add_argument("--peer-tls-key", type=Path, metavar="FILE",
                   help="private key (PEM) of --peer-tls-cert")  # fmt: skip
    p.add_argument("--peer-tls-server-name", metavar="NAME",
                   help="name the peers' certificates are checked against, when it differs "
                        "from the host in --peers")  # fmt: skip
    p.add_argument("--peer-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="longest a query waits for the peers (default: 30; a caller's shorter "
                        "deadline wins)")  # fmt: skip

    p = sub.add_parser("dashboard", help="serve the web dashboard on a local database")
    p.add_argument(
        "--path",
        type=Path,
        default=DEFAULT_PATH,
        help="database directory (default: $KRONICLER_PATH or ./.kronicler)",
    )
    p.add_argument("--http", metavar="HOST:PORT", default="127.0.0.1:8080",
                   help="where to serve it (default: 127.0.0.1:8080)")  # fmt: skip
    p.add_argument("--token", help="require this bearer token (default: $KRONICLER_TOKEN)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name the dashboard answers besides loopback names (repeatable)")  # fmt: skip

    for name, help_text in (
        ("stats", "latency statistics per function (or service/attribute)"),
        ("top", "the functions with the worst figure (default: p99)"),
    ):
        p = sub.add_parser(name, help=help_text)
        _filter_args(p)
        _source_args(p)
        p.add_argument(
            "--group-by",
            default="function",
            help="function, service, attribute:<key> or resource:<key> (e.g. "
            "resource:service.version)",
        )
        p.add_argument(
            "--quantiles",
            type=_quantiles,
            default=DEFAULT_QUANTILES,
            help=f"comma-separated (default: {qdefault})",
        )
        p.add_argument("--exact", action="store_true", help="exact quantiles from raw durations")
        if name == "stats":
            p.add_argument(
                "--order-by",
                default="key",
                help="key, count, errors, mean, max, total or a quantile label such as p99",
            )
            p.add_argument("--limit", type=int, help="show at most this many rows")
        else:
            p.add_argument(
                "--by",
                default="p99",
                help="figure to rank by (default: p99; also "
                "mean, max, total, count, errors, p50...)",
            )
            p.add_argument("-n", type=int, default=10, help="rows to show (default: 10)")

    p = sub.add_parser("slowest", help="the slowest calls, with trace and span ids")
    _filter_args(p)
    _source_args(p)
    p.add_argument("-k", type=int, default=SLOWEST_K, help=f"how many (default: {SLOWEST_K})")

    p = sub.add_parser("series", help="statistics per time bucket")
    _filter_args(p)
    _source_args(p)
    p.add_argument(
        "--step",
        action=_DurationArg,
        help="bucket width, e.g. 1m (default: a round width giving <= 60 buckets)",
    )
    p.add_argument("--group-by", default="function")
    p.add_argument("--quantiles", type=_quantiles, default=(0.5, 0.99))
    p.add_argument("--exact", action="store_true")

    p = sub.add_parser("histogram", help="log-scale latency histogram of one function")
    p.add_argument("name", metavar="FUNCTION")
    _filter_args(p)
    _source_args(p)
    p.add_argument("--per-decade", type=int, default=PER_DECADE, help="buckets per power of ten")
    p.add_argument("--exact", action="store_true")

    p = sub.add_parser("functions", help="functions recorded, with call counts")
    _filter_args(p)
    _source_args(p)

    p = sub.add_parser("anomalies", help="functions whose calls are sometimes much slower")
    _filter_args(p)
    _source_args(p)
    p.add_argument(
        "--min-count", type=int, help="judge only functions with this many calls (default: 50)"
    )
    p.add_argument("--tail-threshold", type=float, help="p99/p50 ratio scoring 1 (default: 4)")
    p.add_argument("--spike-threshold", type=float, help="max/p50 ratio scoring 1 (default: 20)")
    p.add_argument(
        "--regression-threshold",
        type=float,
        help="recent/baseline p99 ratio scoring 1 (default: 2)",
    )
    p.add_argument(
        "--recent",
        action=_DurationArg,
        help="recent window, e.g. 10m (default: last tenth of the range)",
    )
    p.add_argument("--limit", type=int, help=f"most findings (default: {ANOMALY_LIMIT})")

    p = sub.add_parser(
        "explain",
        help="why some calls of one function are slow: attributes, "
        "child calls, time and releases of its slow calls against the rest",
    )
    p.add_argument("name", metavar="FUNCTION")
    p.add_argument("--since", help="start of the range: 15m (ago), ISO date-time, @epoch-seconds")
    p.add_argument("--until", help="end of the range (exclusive), same forms as --since")
    p.add_argument(
        "--slow",
        type=_typed(parse_slow),
        default=None,
        metavar="p99|250ms",
        help="slow calls: above this quantile of the function in the range, or this "
        "duration (default: p99)",
    )
    _source_args(p)

    p = sub.add_parser("retain", help="delete old closed segments (by age and/or total size)")
    p.add_argument(
        "--path",
        type=Path,
        default=DEFAULT_PATH,
        help="database directory (default: $KRONICLER_PATH or ./.kronicler)",
    )
    p.add_argument("--max-age", help="delete segments whose newest call is older (e.g. 7d, 12h)")
    p.add_argument("--max-size", help="then delete the oldest until the database fits (e.g. 10G)")

    p = sub.add_parser("compact", help="merge small finished segments (safe while others write)")
    p.add_argument(
        "--path",
        type=Path,
        default=DEFAULT_PATH,
        help="database directory (default: $KRONICLER_PATH or ./.kronicler)",
    )
    p.add_argument("--time-disjoint", action="store_true",
                   help="rewrite finished segments whose times overlap as segments covering "
                        "disjoint times, as serve does in the background")  # fmt: skip
    p.add_argument("--output-rows", type=int, default=None, metavar="N",
                   help="rows per segment written by --time-disjoint (default: 2^25)")  # fmt: skip
    p.add_argument("--wait", type=float, default=0.0,
                   help="seconds to wait for a compaction or retention running now (default: 0)")  # fmt: skip

    p = sub.add_parser(
        "upgrade",
        help="bring a database written by an older Kronicler up to this version's files "
        "(faster opens and exact answers; safe while others write)",
    )
    p.add_argument(
        "--path",
        type=Path,
        default=DEFAULT_PATH,
        help="database directory (default: $KRONICLER_PATH or ./.kronicler)",
    )
    p.add_argument("--wait", type=float, default=0.0,
                   help="seconds to wait for a compaction or retention running now (default: 0)")  # fmt: skip

    p = sub.add_parser("export", help="write the stored calls to Parquet, CSV or JSON lines")
    _filter_args(p)
    p.add_argument(
        "--path",
        type=Path,
        default=DEFAULT_PATH,
        help="database directory (default: $KRONICLER_PATH or ./.kronicler)",
    )
    p.add_argument("--format", choices=["parquet", "csv", "jsonl"],
                   help="default: from OUT's extension (.parquet, .csv, .jsonl/.ndjson)")  # fmt: skip
    p.add_argument("--columns", help="comma-separated subset of the columns (default: all)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress on stderr (default: when stderr is a terminal)")  # fmt: skip
    p.add_argument("out", metavar="OUT", help="file to write, or - for standard output")

    p = sub.add_parser("demo", help="run a small workload, serve it, and show what Kronicler finds")
    p.add_argument(
        "--path",
        type=Path,
        help="keep the demo database here (default: a temporary directory, deleted at exit)",
    )
    p.add_argument("--requests", type=int, default=600, help="requests to simulate")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def parse_slow(text: str) -> int | str:
    """``"p99"`` stays a quantile label; anything else is a duration (``"250ms"`` -> ns)."""
    from kronicler.query.explain import parse_slow as check

    slow: int | str = text if text.strip().startswith("p") else parse_duration(text)
    check(slow)
    return slow


def make_filter(args: argparse.Namespace) -> Any:
    from kronicler.query import Filter

    attrs = {}
    for pair in getattr(args, "attr", ()):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--attr needs KEY=VALUE, got {pair!r}")
        attrs[key] = value
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    typed = _typed_values(args)
    for value, text in ((since, args.since), (until, args.until)):
        if value is not None:
            typed[value] = text
    if since is not None and until is not None and since >= until:
        raise ValueError(
            f"--since {args.since} ({format_time(since)}) is not before "
            f"--until {args.until} ({format_time(until)})"
        )
    return Filter.make(
        getattr(args, "function", ()),
        service=getattr(args, "service", None),
        since=since,
        until=until,
        attributes=attrs,
    )


def open_backend(args: argparse.Namespace) -> QueryBackend:
    """A :class:`~kronicler.query.local.Local` or a gRPC client, per the options (module doc)."""
    if args.path is not None and args.address:
        raise ValueError("give --path or --address, not both")
    if args.address:
        from kronicler.server.app import split_address

        split_address(args.address)  # "HOST:PORT", checked before any name lookup
    if args.path is not None or (not args.address and DEFAULT_PATH.is_dir()):
        from kronicler.query.local import Local

        return Local(args.path if args.path is not None else DEFAULT_PATH)
    from kronicler.server import DEFAULT_ADDRESS, Client

    return Client(
        args.address or os.environ.get("KRONICLER_ADDRESS") or DEFAULT_ADDRESS,
        token=args.token or os.environ.get("KRONICLER_TOKEN") or None,
        tls=args.tls,
        ca_cert=args.tls_ca,
    )


def run_query(args: argparse.Namespace) -> str:
    import grpc

    flt = make_filter(args)
    backend = open_backend(args)
    try:
        out = _answer(args, backend, flt)
        missing = backend.missing_peers()
        if missing:
            _warn(f"kronicler: warning: partial answer: {len(missing)} peer(s) did not answer, "
                  f"their data is missing: {'; '.join(missing)}")  # fmt: skip
        return out
    except grpc.RpcError as exc:
        chose = args.path is not None or args.address or os.environ.get("KRONICLER_ADDRESS")
        if exc.code() == grpc.StatusCode.UNAVAILABLE and not chose:
            from kronicler.server import DEFAULT_ADDRESS

            raise ValueError(
                f"no database at {DEFAULT_PATH} and no server at {DEFAULT_ADDRESS}; "
                "use --path DIR or --address HOST:PORT"
            ) from None
        raise
    finally:
        backend.close()


def _answer(args: argparse.Namespace, backend: QueryBackend, flt: Filter) -> str:
    cmd, as_json = args.command, args.json
    if cmd in ("stats", "top"):
        kw: dict[str, Any] = dict(
            group_by=args.group_by, quantiles=args.quantiles, exact=args.exact
        )
        if cmd == "stats":
            kw.update(order_by=args.order_by, limit=args.limit)
        else:
            kw.update(order_by=args.by, limit=args.n)
        t = backend.stats(flt, **kw)
        return render.stats_json(t) if as_json else render.stats_table(t)
    if cmd == "slowest":
        calls = backend.slowest(flt, k=args.k)
        return (
            render.dumps([c.to_dict() for c in calls]) if as_json else render.slowest_table(calls)
        )
    if cmd == "series":
        s = backend.series(
            flt, step=args.step, group_by=args.group_by, quantiles=args.quantiles, exact=args.exact
        )
        return render.dumps(s.to_dict()) if as_json else render.series_table(s)
    if cmd == "histogram":
        h = backend.histogram(args.name, flt, per_decade=args.per_decade, exact=args.exact)
        return render.dumps(h.to_dict()) if as_json else render.histogram_table(h)
    if cmd == "functions":
        fs = backend.list_functions(flt)
        return render.dumps([f.to_dict() for f in fs]) if as_json else render.functions_table(fs)
    if cmd == "explain":
        from kronicler.cli.explain_text import explain_text

        e = backend.explain(args.name, since=flt.since, until=flt.until, slow=args.slow)
        return render.dumps(e.to_dict()) if as_json else explain_text(e)
    assert cmd == "anomalies"
    opts = {
        k: v
        for k, v in dict(
            min_count=args.min_count,
            tail_threshold=args.tail_threshold,
            spike_threshold=args.spike_threshold,
            regression_threshold=args.regression_threshold,
            recent=args.recent,
            limit=args.limit,
        ).items()
        if v is not None
    }
    found = backend.anomalies(flt, **opts)
    return render.dumps([a.to_dict() for a in found]) if as_json else render.anomalies_text(found)


def serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from kronicler.db import Database
    from kronicler.server import DEFAULT_ADDRESS, ServerOptions

    options = ServerOptions(
        address=args.address or os.environ.get("KRONICLER_ADDRESS") or DEFAULT_ADDRESS,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        token=args.token or os.environ.get("KRONICLER_TOKEN") or None,
        max_receive_bytes=args.max_message_bytes,
        otlp=not args.no_otlp,
        ingest_workers=args.ingest_workers,
        otlp_address=None if args.no_otlp or args.no_otlp_address else args.otlp_address,
        cors_origins=tuple(args.cors_origin),
        compact_every=args.compact_every,
    )
    if not args.no_otlp:
        options = replace(options, otlp_http=args.otlp_http or default_otlp_http(options.address))
        if options.ingest_workers and not args.no_otlp_address and args.otlp_address is None:
            # the workers' own port by default: the query process then carries no OTLP
            # (docs/server.md, "Ingest workers")
            options = replace(options, otlp_address=default_otlp_grpc(options.address))
    if args.peers:
        return serve_frontend(args, options)
    _checked(options)
    _print_log("kronicler.server.maintenance")
    db = Database.open(args.path)
    return _serve_until_stopped(args, db, options, f"serving {args.path}", db.close)


def serve_frontend(args: argparse.Namespace, options: Any) -> int:
    """``serve --peers``: the QueryService over a :class:`~kronicler.server.frontend.Frontend`."""
    from dataclasses import replace

    from kronicler.server.frontend import Frontend

    options = replace(options, otlp=False, otlp_http=None, otlp_address=None, ingest_workers=0)
    _checked(options)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    frontend = Frontend(
        peers, token=args.peer_token or options.token, timeout=args.peer_timeout,
        tls=args.peer_tls, ca_cert=args.peer_tls_ca, client_cert=args.peer_tls_cert,
        client_key=args.peer_tls_key, server_name=args.peer_tls_server_name,
    )  # fmt: skip
    label = f"frontend for {', '.join(peers)}"
    return _serve_until_stopped(args, frontend, options, label, frontend.close)


def _checked(options: Any) -> None:
    """Refuse bad server options before anything is opened; warn about an exposed address."""
    from kronicler.server.app import split_address

    options.check()
    _warn(exposure_warning(split_address(options.address)[0], options.token))
    if options.otlp_address is not None:
        _warn(exposure_warning(split_address(options.otlp_address)[0], options.token))


def _serve_until_stopped(
    args: argparse.Namespace, source: Any, options: Any, label: str, close: Any
) -> int:
    """Serve ``source`` (a database or a frontend) with ``options`` until SIGINT or SIGTERM,
    with the dashboard when ``--http`` asks for it; then stop both and ``close()``."""
    import signal
    import threading

    from kronicler.server import KroniclerServer

    stop = threading.Event()
    web = server = None
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        server = KroniclerServer(source, options).start()
        print(
            f"kronicler: {label} on {server.address} "
            f"({'TLS' if server.tls else 'plaintext'}"
            f"{', token required' if options.token else ''}); Ctrl-C to stop",
            flush=True,
        )
        if server.otlp_address is not None:
            print(f"kronicler: OTLP/gRPC in the ingest workers on {server.otlp_address}",
                  flush=True)  # fmt: skip
        if server.otlp_http is not None:
            print(f"kronicler: OTLP/HTTP on {server.otlp_http.url}", flush=True)
        if args.http:
            web = start_dashboard(args, source, options.token)
        stop.wait()
    finally:
        if web is not None:
            web.stop()
        if server is not None:
            server.stop(grace=2.0)
        close()
    return 0


def start_dashboard(args: argparse.Namespace, source: Any, token: str | None) -> Any:
    """``serve --http``: the dashboard over ``source`` (the database or the frontend) in a
    background thread; the caller stops it."""
    from kronicler.web import WebServer, parse_address

    host, port = parse_address(args.http)
    _warn(exposure_warning(host, token))
    web = WebServer(source, host, port, token=token, allowed_hosts=args.allow_host).start()
    print(f"kronicler: dashboard on {web.url}", flush=True)
    return web


def _print_log(logger: str) -> None:
    """Show ``logger``'s messages (what background work did) on stdout, beside serve's own."""
    import logging

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("kronicler: %(message)s"))
    target = logging.getLogger(logger)
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    target.propagate = False


def default_otlp_http(grpc_address: str) -> str:
    """OTLP/HTTP beside gRPC: the same host, port 4318 (0 when the gRPC port is 0)."""
    return _beside(grpc_address, 4318)


def default_otlp_grpc(grpc_address: str) -> str:
    """The ingest workers' own OTLP/gRPC beside the server's: the same host, port 4319 (0 when
    the server's port is 0)."""
    return _beside(grpc_address, 4319)


def _beside(grpc_address: str, port: int) -> str:
    """``port`` on ``grpc_address``'s host (0 when that address's port is 0)."""
    from kronicler.server.app import split_address

    host, own = split_address(grpc_address)
    host = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    return f"{host}:{0 if own == 0 else port}"


def exposure_warning(host: str, token: str | None) -> str | None:
    """The warning for listening on ``host`` without a token, or None when it is loopback-only."""
    from kronicler.server.auth import is_loopback

    if token or is_loopback(host or "127.0.0.1"):
        return None
    return (
        f"kronicler: warning: listening on {host} (beyond loopback) without --token: anyone who "
        "can reach this address can read the data and send spans"
    )


def _warn(message: str | None) -> None:
    if message:
        print(message, file=sys.stderr, flush=True)


_SIZES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"10G" -> 10 * 2**30`` bytes; ``ValueError`` naming the text otherwise."""
    body = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = body[-1:] if body[-1:] in _SIZES and body[-1:] != "" else ""
    try:
        value = float(body[: len(body) - len(unit)])
    except ValueError:
        raise ValueError(f"bad size {text!r}: use e.g. 500M, 10G") from None
    if value < 0:
        raise ValueError(f"bad size {text!r}: must not be negative")
    return int(value * _SIZES[unit])


def retain(args: argparse.Namespace) -> int:
    from kronicler.cli.units import parse_duration
    from kronicler.db import Database

    if args.max_age is None and args.max_size is None:
        raise ValueError("say --max-age and/or --max-size")
    max_age = None if args.max_age is None else parse_duration(args.max_age)
    max_bytes = None if args.max_size is None else parse_size(args.max_size)
    with Database.open(args.path, create=False) as db:
        removed = db.retain(max_age_ns=max_age, max_bytes=max_bytes)
        print(f"removed {removed} segment(s); {db.size_bytes():,} bytes left in {args.path}")
    return 0


def compact(args: argparse.Namespace) -> int:
    from kronicler.db import Database

    if not math.isfinite(args.wait) or args.wait < 0:
        raise ValueError(f"bad --wait {args.wait!r}: seconds, 0 or more")
    if args.output_rows is not None and not args.time_disjoint:
        raise ValueError("--output-rows goes with --time-disjoint")
    options = {} if args.output_rows is None else {"output_rows": args.output_rows}
    with Database.open(args.path, create=False) as db:
        merged = db.compact(wait=args.wait, time_disjoint=args.time_disjoint, **options)
        left = len(list((args.path / "segments").glob("*.kseg")))
        print(f"merged {merged} segment(s); {left} segment(s) now in {args.path}")
    return 0


def upgrade(args: argparse.Namespace) -> int:
    """Rewrite closed segments' older-format indexes (:func:`kronicler.db.index.upgrade`),
    add the sorted-duration files segments from before them lack
    (:func:`kronicler.db.backfill.backfill`) and their prefix and suffix roll-up records
    (:func:`kronicler.db.backfill.add_edge_records`), merge closed segments' sorted-duration
    records and write the roll-up across segments (:func:`kronicler.db.compaction.write_tree`). Each holds the maintenance lock and replaces or
    adds whole files atomically, so writers and readers go on meanwhile; running it again does
    nothing more."""
    from kronicler.db import backfill, compaction, index
    from kronicler.db.metadata import load_catalog

    if not math.isfinite(args.wait) or args.wait < 0:
        raise ValueError(f"bad --wait {args.wait!r}: seconds, 0 or more")
    load_catalog(args.path)  # "not a Kronicler database: DIR"; creates nothing
    segments = args.path / "segments"
    indexes = index.upgrade(segments, wait=args.wait)
    durations = backfill.backfill(segments, wait=args.wait)
    edges = backfill.add_edge_records(segments, wait=args.wait)
    tree = compaction.write_tree(segments, wait=args.wait)
    print(f"rewrote {len(indexes)} segment index(es) in the current format; added sorted "
          f"durations to {len(durations)} segment(s) and edge roll-ups to {len(edges)} "
          f"segment(s) in {args.path}"
          f"{'; wrote the roll-up across segments' if tree else ''}")  # fmt: skip
    return 0


_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
               ".ndjson": "jsonl", ".json": "jsonl"}  # fmt: skip


def export(args: argparse.Namespace) -> int:
    from kronicler.db import Database
    from kronicler.query.export import export as write_export

    fmt = args.format or _EXTENSIONS.get(Path(args.out).suffix.lower())
    if fmt is None:
        raise ValueError(f"say --format parquet|csv|jsonl (cannot tell from {args.out!r})")
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    show = sys.stderr.isatty() if args.progress is None else args.progress
    flt = make_filter(args)

    def progress(done: int, total: int) -> None:
        share = f" ({100 * done / total:.0f}%)" if total else ""
        print(f"\rkronicler export: {done:,} of ~{total:,} rows{share}", end="",
              file=sys.stderr, flush=True)  # fmt: skip

    with Database.open(args.path, readonly=True) as db:
        rows = write_export(db, args.out, format=fmt, flt=flt, columns=columns,
                            progress=progress if show else None)  # fmt: skip
    if show:
        print(file=sys.stderr)
    if args.out != "-":
        print(f"exported {rows:,} calls to {args.out} ({fmt})", file=sys.stderr)
    return 0


def dashboard(args: argparse.Namespace) -> int:
    from kronicler.db import Database
    from kronicler.errors import DatabaseError
    from kronicler.web import parse_address
    from kronicler.web import serve as serve_web

    path: Path = args.path
    host, port = parse_address(args.http)
    token = args.token or os.environ.get("KRONICLER_TOKEN") or None
    _warn(exposure_warning(host, token))
    try:
        db = Database.open(path, readonly=True)
    except DatabaseError as exc:
        raise DatabaseError(f"{exc} (try: kronicler demo --path {path})") from None
    try:
        serve_web(db, host, port, token=token, allowed_hosts=args.allow_host,
                  ready=lambda url: print(f"kronicler: dashboard of {path} on {url}; "
                                          "Ctrl-C to stop", flush=True))  # fmt: skip
    finally:
        db.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "dashboard":
            return dashboard(args)
        if args.command == "retain":
            return retain(args)
        if args.command == "compact":
            return compact(args)
        if args.command == "upgrade":
            return upgrade(args)
        if args.command == "export":
            return export(args)
        if args.command == "demo":
            from kronicler.cli.demo import run_demo

            return run_demo(args)
        print(run_query(args))
        sys.stdout.flush()
        return 0
    except BrokenPipeError:  # `kronicler series | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush does not fail again
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one readable line, never a traceback, for expected failures
        message = in_typed_units(_describe(exc), _typed_values(args))
        print(f"kronicler {args.command}: {message}", file=sys.stderr)
        return 1


def _describe(exc: BaseException) -> str:
    import grpc

    from kronicler.errors import KroniclerError

    if isinstance(exc, KroniclerError):
        return str(exc)
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        name = code.name if code is not None else "ERROR"
        if code == grpc.StatusCode.UNAUTHENTICATED:
            details = f"{details}; give the server's token with --token or KRONICLER_TOKEN"
        return f"{name}: {details}"
    if isinstance(exc, (ValueError, LookupError, OSError, ImportError)):
        return str(exc.args[0]) if exc.args and isinstance(exc, LookupError) else str(exc)
    return f"{type(exc).__name__}: {exc}"
