"""The JSON shapes of the HTTP API, declared once so that the OpenAPI description documents them.

These models exist for the description (``/api/openapi.json``) and for the tests that check the
answers against it; the handlers build plain dicts in :mod:`kronicler.web.views` and send them
as they are, so no answer pays for a validation pass. Units follow the query layer: durations
``*_ns`` (float nanoseconds, ``null`` when nothing was measured), times ``*_unix_nano`` (integer
Unix epoch nanoseconds: JavaScript reads them as doubles, exact to a fraction of a microsecond),
ids lowercase hex.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every error answer: the HTTP status, its name and a sentence naming the bad value."""

    status: int = Field(examples=[400])
    error: str = Field(examples=["Bad Request"])
    message: str = Field(examples=["since (20) must be before until (10)"])


class WindowOut(BaseModel):
    """The time range the answer covers (open ends filled in from the stored data)."""

    preset: str | None = Field(description="15m, 1h, 24h, 7d, all; null for since/until")
    since_unix_nano: int | None
    until_unix_nano: int | None = Field(description="exclusive")
    seconds: float | None = Field(description="width of the window, for rates")
    now_unix_nano: int = Field(description="the server's clock")


class DataRange(BaseModel):
    first_start_unix_nano: int
    last_start_unix_nano: int


class Call(BaseModel):
    """One recorded call, with the ids to open it in a trace viewer."""

    function: str
    service: str
    start_unix_nano: int
    duration_ns: int
    status: int = Field(description="0 unset, 1 ok, 2 error")
    kind: int = Field(
        description="OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer"
    )
    trace_id: str = Field(description="32 lowercase hex digits")
    span_id: str = Field(description="16 lowercase hex digits")
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any] = Field(
        description="resource attributes: service.version, host.name, ..."
    )


class Evidence(BaseModel):
    """Why a function is flagged: the strongest signal's score and the ratios behind it."""

    score: float = Field(description="strongest signal: log(ratio) / log(threshold); >= 1")
    reasons: list[str]
    signals: list[str] = Field(description="signals at or over their threshold")
    thresholds: dict[str, float]
    count: int
    errors: int
    p50_ns: float
    p99_ns: float
    max_ns: float
    tail_ratio: float = Field(description="p99 / p50")
    spike_ratio: float = Field(description="max / p50")
    recent_since_unix_nano: int
    recent_count: int
    recent_p99_ns: float | None
    baseline_p99_ns: float | None
    regression_ratio: float | None = Field(description="recent p99 / baseline p99")
    exemplars: list[Call]


class AnomalyOut(Evidence):
    function: str


class Figures(BaseModel):
    """The figures of one group of calls (a function, or one value of a compared key)."""

    count: int
    calls_per_s: float | None
    errors: int
    error_rate: float | None = Field(description="errors / count, 0..1")
    mean_ns: float | None
    min_ns: float | None
    max_ns: float | None
    stddev_ns: float | None
    stderr_ns: float | None = Field(description="standard error of the mean")
    p50_ns: float | None
    p90_ns: float | None
    p99_ns: float | None


class FunctionRow(Figures):
    function: str
    anomaly: Evidence | None = Field(description="null unless the anomaly finder flags it")


class CompareRow(Figures):
    value: str = Field(description="the compared key's value, as text (e.g. a release)")


class CompareOut(BaseModel):
    """One function's calls grouped by a key (``resource:service.version``...), by value."""

    function: str
    by: str = Field(description="the group key: resource:KEY, attribute:KEY or service")
    window: WindowOut
    more: bool = Field(description="true when more values exist than are listed")
    grouped: int = Field(
        description="calls in the listed values (calls lacking the key are in none)"
    )
    rows: list[CompareRow] = Field(description="the most called values, in key order")


class FunctionsTable(BaseModel):
    window: WindowOut
    data_range: DataRange | None
    rows: list[FunctionRow]


class SeriesColumns(BaseModel):
    """One array per figure, one entry per bucket (null where the bucket is empty)."""

    function: str
    count: list[int]
    errors: list[int]
    mean_ns: list[float | None]
    max_ns: list[float | None]
    p50_ns: list[float | None]
    p90_ns: list[float | None]
    p99_ns: list[float | None]


class SeriesOut(BaseModel):
    step_ns: int | None
    since_unix_nano: int | None
    until_unix_nano: int | None
    start_unix_nano: list[int] = Field(default=[], description="start of each bucket")
    series: list[SeriesColumns]


class DetailSeries(BaseModel):
    step_ns: int | None
    since_unix_nano: int | None
    until_unix_nano: int | None
    start_unix_nano: list[int] = []
    function: str
    count: list[int] = []
    errors: list[int] = []
    mean_ns: list[float | None] = []
    max_ns: list[float | None] = []
    p50_ns: list[float | None] = []
    p90_ns: list[float | None] = []
    p99_ns: list[float | None] = []


class HistogramBucket(BaseModel):
    lower_ns: float
    upper_ns: float = Field(description="exclusive")
    count: int


class HistogramOut(BaseModel):
    function: str
    count: int
    per_decade: int
    exact: bool
    buckets: list[HistogramBucket] = Field(description="non-empty buckets, increasing")


class Detail(BaseModel):
    function: str
    window: WindowOut
    stats: FunctionRow | None = Field(description="null when no call falls in the window")
    anomaly: Evidence | None
    thresholds: dict[str, float]
    min_count: int = Field(description="functions with fewer calls are not judged")
    series: DetailSeries | None = Field(description="null when asked with series=false")
    histogram: HistogramOut
    slowest: list[Call]


class Meta(BaseModel):
    version: str
    now_unix_nano: int
    data_range: DataRange | None
    services: list[str]
    functions: int
    presets: list[str]
    token_required: bool


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class AttributeFindingOut(BaseModel):
    """An attribute value over-represented among the slow calls, with its counts."""

    key: str
    value: str = Field(description="as text (non-strings in JSON form)")
    slow: int = Field(description="slow calls carrying it")
    baseline: int = Field(description="other calls carrying it")
    slow_total: int
    baseline_total: int
    slow_share: float
    baseline_share: float
    score: float = Field(description="slow_share - baseline_share")
    lift: float | None = Field(description="slow_share / baseline_share; null when 0 baseline")
    z: float = Field(description="two-proportion z statistic")
    examples: list[Call]


class ChildFindingOut(BaseModel):
    """A child function's time inside slow calls against inside the others (sums in ns)."""

    function: str = Field(description="child function name, or '(self time)'")
    slow_calls: int
    baseline_calls: int
    slow_children: int
    baseline_children: int
    slow_time_ns: int
    baseline_time_ns: int
    slow_total: int
    baseline_total: int
    slow_parent_time_ns: int
    baseline_parent_time_ns: int
    slow_mean_ns: float | None = Field(description="child time per slow call")
    baseline_mean_ns: float | None
    slow_share: float | None = Field(description="of the slow calls' time")
    baseline_share: float | None
    extra_ns: float = Field(description="slow_mean_ns - baseline_mean_ns")
    examples: list[Call]


class SlowShareBucketOut(BaseModel):
    start_unix_nano: int
    calls: int
    slow: int
    slow_share: float | None


class ReleaseOut(BaseModel):
    """One service.version and the slow share before and after its first call."""

    key: str
    version: str
    calls: int
    slow: int
    first_start_unix_nano: int
    last_start_unix_nano: int
    before_calls: int
    before_slow: int
    before_slow_share: float | None
    after_calls: int
    after_slow: int
    after_slow_share: float | None
    z: float
    lines_up: bool = Field(description="the release after which the slow share rose most")


class ExplainOut(BaseModel):
    """Why some calls of one function are slow: its slow calls against the rest."""

    window: WindowOut
    function: str
    since_unix_nano: int | None
    until_unix_nano: int | None
    quantile: float | None = Field(description="null for an absolute threshold")
    threshold_ns: float | None = Field(description="slow calls: duration > threshold_ns")
    count: int
    slow_count: int
    baseline_count: int
    slow_time_ns: int
    baseline_time_ns: int
    slow_mean_ns: float | None
    baseline_mean_ns: float | None
    attributes: list[AttributeFindingOut]
    children: list[ChildFindingOut]
    self_time: ChildFindingOut | None
    step_ns: int
    series: list[SlowShareBucketOut]
    cluster_score: float
    clustered: bool
    releases: list[ReleaseOut]
    examples: list[Call]
