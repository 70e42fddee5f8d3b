from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SpanKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPAN_KIND_UNSPECIFIED: _ClassVar[SpanKind]
    SPAN_KIND_INTERNAL: _ClassVar[SpanKind]
    SPAN_KIND_SERVER: _ClassVar[SpanKind]
    SPAN_KIND_CLIENT: _ClassVar[SpanKind]
    SPAN_KIND_PRODUCER: _ClassVar[SpanKind]
    SPAN_KIND_CONSUMER: _ClassVar[SpanKind]
SPAN_KIND_UNSPECIFIED: SpanKind
SPAN_KIND_INTERNAL: SpanKind
SPAN_KIND_SERVER: SpanKind
SPAN_KIND_CLIENT: SpanKind
SPAN_KIND_PRODUCER: SpanKind
SPAN_KIND_CONSUMER: SpanKind

class Filter(_message.Message):
    __slots__ = ("functions", "service", "since_unix_nano", "until_unix_nano", "attributes", "resource")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ResourceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    functions: _containers.RepeatedScalarFieldContainer[str]
    service: str
    since_unix_nano: int
    until_unix_nano: int
    attributes: _containers.ScalarMap[str, str]
    resource: _containers.ScalarMap[str, str]
    def __init__(self, functions: _Optional[_Iterable[str]] = ..., service: _Optional[str] = ..., since_unix_nano: _Optional[int] = ..., until_unix_nano: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ..., resource: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Quantile(_message.Message):
    __slots__ = ("q", "value_ns")
    Q_FIELD_NUMBER: _ClassVar[int]
    VALUE_NS_FIELD_NUMBER: _ClassVar[int]
    q: float
    value_ns: float
    def __init__(self, q: _Optional[float] = ..., value_ns: _Optional[float] = ...) -> None: ...

class GroupStats(_message.Message):
    __slots__ = ("key", "count", "errors", "mean_ns", "stddev_ns", "stderr_ns", "min_ns", "max_ns", "quantiles")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MEAN_NS_FIELD_NUMBER: _ClassVar[int]
    STDDEV_NS_FIELD_NUMBER: _ClassVar[int]
    STDERR_NS_FIELD_NUMBER: _ClassVar[int]
    MIN_NS_FIELD_NUMBER: _ClassVar[int]
    MAX_NS_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    key: str
    count: int
    errors: int
    mean_ns: float
    stddev_ns: float
    stderr_ns: float
    min_ns: float
    max_ns: float
    quantiles: _containers.RepeatedCompositeFieldContainer[Quantile]
    def __init__(self, key: _Optional[str] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., mean_ns: _Optional[float] = ..., stddev_ns: _Optional[float] = ..., stderr_ns: _Optional[float] = ..., min_ns: _Optional[float] = ..., max_ns: _Optional[float] = ..., quantiles: _Optional[_Iterable[_Union[Quantile, _Mapping]]] = ...) -> None: ...

class FunctionInfo(_message.Message):
    __slots__ = ("name", "count", "errors", "first_start_unix_nano", "last_start_unix_nano")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    FIRST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    errors: int
    first_start_unix_nano: int
    last_start_unix_nano: int
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., first_start_unix_nano: _Optional[int] = ..., last_start_unix_nano: _Optional[int] = ...) -> None: ...

class ListFunctionsRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: Filter
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class ListFunctionsResponse(_message.Message):
    __slots__ = ("functions", "first_start_unix_nano", "last_start_unix_nano")
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    FIRST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    functions: _containers.RepeatedCompositeFieldContainer[FunctionInfo]
    first_start_unix_nano: int
    last_start_unix_nano: int
    def __init__(self, functions: _Optional[_Iterable[_Union[FunctionInfo, _Mapping]]] = ..., first_start_unix_nano: _Optional[int] = ..., last_start_unix_nano: _Optional[int] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("filter", "group_by", "quantiles", "exact", "order_by", "limit")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    filter: Filter
    group_by: str
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    exact: bool
    order_by: str
    limit: int
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ..., group_by: _Optional[str] = ..., quantiles: _Optional[_Iterable[float]] = ..., exact: _Optional[bool] = ..., order_by: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("group_by", "quantiles", "exact", "groups")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    group_by: str
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    exact: bool
    groups: _containers.RepeatedCompositeFieldContainer[GroupStats]
    def __init__(self, group_by: _Optional[str] = ..., quantiles: _Optional[_Iterable[float]] = ..., exact: _Optional[bool] = ..., groups: _Optional[_Iterable[_Union[GroupStats, _Mapping]]] = ...) -> None: ...

class SeriesPoint(_message.Message):
    __slots__ = ("start_unix_nano", "count", "errors", "mean_ns", "min_ns", "max_ns", "quantiles_ns")
    START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MEAN_NS_FIELD_NUMBER: _ClassVar[int]
    MIN_NS_FIELD_NUMBER: _ClassVar[int]
    MAX_NS_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_NS_FIELD_NUMBER: _ClassVar[int]
    start_unix_nano: int
    count: int
    errors: int
    mean_ns: float
    min_ns: float
    max_ns: float
    quantiles_ns: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, start_unix_nano: _Optional[int] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., mean_ns: _Optional[float] = ..., min_ns: _Optional[float] = ..., max_ns: _Optional[float] = ..., quantiles_ns: _Optional[_Iterable[float]] = ...) -> None: ...

class Series(_message.Message):
    __slots__ = ("key", "points")
    KEY_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    key: str
    points: _containers.RepeatedCompositeFieldContainer[SeriesPoint]
    def __init__(self, key: _Optional[str] = ..., points: _Optional[_Iterable[_Union[SeriesPoint, _Mapping]]] = ...) -> None: ...

class GetSeriesRequest(_message.Message):
    __slots__ = ("filter", "step_ns", "group_by", "quantiles", "exact")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STEP_NS_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    filter: Filter
    step_ns: int
    group_by: str
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    exact: bool
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ..., step_ns: _Optional[int] = ..., group_by: _Optional[str] = ..., quantiles: _Optional[_Iterable[float]] = ..., exact: _Optional[bool] = ...) -> None: ...

class GetSeriesResponse(_message.Message):
    __slots__ = ("group_by", "step_ns", "since_unix_nano", "until_unix_nano", "quantiles", "exact", "series")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    STEP_NS_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    group_by: str
    step_ns: int
    since_unix_nano: int
    until_unix_nano: int
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    exact: bool
    series: _containers.RepeatedCompositeFieldContainer[Series]
    def __init__(self, group_by: _Optional[str] = ..., step_ns: _Optional[int] = ..., since_unix_nano: _Optional[int] = ..., until_unix_nano: _Optional[int] = ..., quantiles: _Optional[_Iterable[float]] = ..., exact: _Optional[bool] = ..., series: _Optional[_Iterable[_Union[Series, _Mapping]]] = ...) -> None: ...

class HistogramBucket(_message.Message):
    __slots__ = ("lower_ns", "upper_ns", "count")
    LOWER_NS_FIELD_NUMBER: _ClassVar[int]
    UPPER_NS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    lower_ns: float
    upper_ns: float
    count: int
    def __init__(self, lower_ns: _Optional[float] = ..., upper_ns: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class GetHistogramRequest(_message.Message):
    __slots__ = ("function", "filter", "per_decade", "exact")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PER_DECADE_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    function: str
    filter: Filter
    per_decade: int
    exact: bool
    def __init__(self, function: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., per_decade: _Optional[int] = ..., exact: _Optional[bool] = ...) -> None: ...

class GetHistogramResponse(_message.Message):
    __slots__ = ("function", "count", "per_decade", "exact", "buckets")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    PER_DECADE_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    function: str
    count: int
    per_decade: int
    exact: bool
    buckets: _containers.RepeatedCompositeFieldContainer[HistogramBucket]
    def __init__(self, function: _Optional[str] = ..., count: _Optional[int] = ..., per_decade: _Optional[int] = ..., exact: _Optional[bool] = ..., buckets: _Optional[_Iterable[_Union[HistogramBucket, _Mapping]]] = ...) -> None: ...

class Call(_message.Message):
    __slots__ = ("function", "service", "start_unix_nano", "duration_ns", "status", "kind", "trace_id", "span_id", "parent_span_id", "attributes", "attributes_json", "resource", "resource_json")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ResourceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_JSON_FIELD_NUMBER: _ClassVar[int]
    function: str
    service: str
    start_unix_nano: int
    duration_ns: int
    status: int
    kind: SpanKind
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: _containers.ScalarMap[str, str]
    attributes_json: str
    resource: _containers.ScalarMap[str, str]
    resource_json: str
    def __init__(self, function: _Optional[str] = ..., service: _Optional[str] = ..., start_unix_nano: _Optional[int] = ..., duration_ns: _Optional[int] = ..., status: _Optional[int] = ..., kind: _Optional[_Union[SpanKind, str]] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., parent_span_id: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., attributes_json: _Optional[str] = ..., resource: _Optional[_Mapping[str, str]] = ..., resource_json: _Optional[str] = ...) -> None: ...

class GetSlowestRequest(_message.Message):
    __slots__ = ("filter", "k")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    filter: Filter
    k: int
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ..., k: _Optional[int] = ...) -> None: ...

class GetSlowestResponse(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    def __init__(self, calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class GetAnomaliesRequest(_message.Message):
    __slots__ = ("filter", "min_count", "tail_threshold", "spike_threshold", "regression_threshold", "recent_ns", "limit", "exemplars")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    TAIL_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SPIKE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REGRESSION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RECENT_NS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    filter: Filter
    min_count: int
    tail_threshold: float
    spike_threshold: float
    regression_threshold: float
    recent_ns: int
    limit: int
    exemplars: int
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ..., min_count: _Optional[int] = ..., tail_threshold: _Optional[float] = ..., spike_threshold: _Optional[float] = ..., regression_threshold: _Optional[float] = ..., recent_ns: _Optional[int] = ..., limit: _Optional[int] = ..., exemplars: _Optional[int] = ...) -> None: ...

class Anomaly(_message.Message):
    __slots__ = ("function", "score", "reasons", "count", "errors", "p50_ns", "p99_ns", "max_ns", "tail_ratio", "spike_ratio", "recent_since_unix_nano", "recent_count", "recent_p99_ns", "baseline_p99_ns", "regression_ratio", "exemplars")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    P50_NS_FIELD_NUMBER: _ClassVar[int]
    P99_NS_FIELD_NUMBER: _ClassVar[int]
    MAX_NS_FIELD_NUMBER: _ClassVar[int]
    TAIL_RATIO_FIELD_NUMBER: _ClassVar[int]
    SPIKE_RATIO_FIELD_NUMBER: _ClassVar[int]
    RECENT_SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    RECENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECENT_P99_NS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_P99_NS_FIELD_NUMBER: _ClassVar[int]
    REGRESSION_RATIO_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    function: str
    score: float
    reasons: _containers.RepeatedScalarFieldContainer[str]
    count: int
    errors: int
    p50_ns: float
    p99_ns: float
    max_ns: float
    tail_ratio: float
    spike_ratio: float
    recent_since_unix_nano: int
    recent_count: int
    recent_p99_ns: float
    baseline_p99_ns: float
    regression_ratio: float
    exemplars: _containers.RepeatedCompositeFieldContainer[Call]
    def __init__(self, function: _Optional[str] = ..., score: _Optional[float] = ..., reasons: _Optional[_Iterable[str]] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., p50_ns: _Optional[float] = ..., p99_ns: _Optional[float] = ..., max_ns: _Optional[float] = ..., tail_ratio: _Optional[float] = ..., spike_ratio: _Optional[float] = ..., recent_since_unix_nano: _Optional[int] = ..., recent_count: _Optional[int] = ..., recent_p99_ns: _Optional[float] = ..., baseline_p99_ns: _Optional[float] = ..., regression_ratio: _Optional[float] = ..., exemplars: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class GetAnomaliesResponse(_message.Message):
    __slots__ = ("anomalies",)
    ANOMALIES_FIELD_NUMBER: _ClassVar[int]
    anomalies: _containers.RepeatedCompositeFieldContainer[Anomaly]
    def __init__(self, anomalies: _Optional[_Iterable[_Union[Anomaly, _Mapping]]] = ...) -> None: ...
