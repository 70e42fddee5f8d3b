"""What one query may ask for and cost: the caps every transport enforces the same way.

Each cap bounds a cost a single client controls: the text it sends (patterns, names, attribute
filters), the rows a query decodes into memory, and the size of the answer. The query layer checks
them, so the gRPC server, the HTTP API and the CLI refuse the same requests with the same message
(``ValueError``; :class:`kronicler.errors.LimitExceededError` for rows and answer sizes, which
servers report as ``RESOURCE_EXHAUSTED``). Values are generous for people and tools, and small
enough that a request at every cap answers in seconds with tens of MB at most.
"""

from __future__ import annotations

#: Function names or glob patterns in one filter.
MAX_PATTERNS = 256
#: Characters in one function name or pattern (matching costs time per character).
MAX_PATTERN_CHARS = 1024
#: Characters in a service name, an attribute key or an attribute value in a filter.
MAX_FILTER_TEXT = 4096
#: ``key = value`` conditions in one filter.
MAX_ATTRIBUTE_FILTERS = 32
#: Rows a query may decode (an exact, service- or attribute-filtered query over more is refused;
#: about 40 bytes each at most, so ~1 GB).
MAX_SCAN_ROWS = 25_000_000
#: Findings one anomalies query returns, and slowest calls attached to each.
MAX_FINDINGS = 10_000
MAX_EXEMPLARS = 100
#: Calls returned in total by one query (slowest, or anomalies' exemplars together).
MAX_CALLS = 10_000
#: Numbers in one series answer (points x (5 + quantiles)): ~8 bytes each on the wire.
MAX_SERIES_VALUES = 1_000_000
#: Findings per section of one explain answer (attribute values, child functions), example calls
#: attached to each finding, and release values compared.
MAX_EXPLAIN_FINDINGS = 20
MAX_EXPLAIN_EXAMPLES = 3
MAX_EXPLAIN_RELEASES = 50
