from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
SPAN_KIND_CLIENT: SpanKind
SPAN_KIND_CONSUMER: SpanKind
SPAN_KIND_INTERNAL: SpanKind
SPAN_KIND_PRODUCER: SpanKind
SPAN_KIND_SERVER: SpanKind
SPAN_KIND_UNSPECIFIED: SpanKind

class Anomaly(_message.Message):
    __slots__ = ["baseline_p99_ns", "count", "errors", "exemplars", "function", "max_ns", "p50_ns", "p99_ns", "reasons", "recent_count", "recent_p99_ns", "recent_since_unix_nano", "regression_ratio", "score", "spike_ratio", "tail_ratio"]
    BASELINE_P99_NS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    MAX_NS_FIELD_NUMBER: _ClassVar[int]
    P50_NS_FIELD_NUMBER: _ClassVar[int]
    P99_NS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    RECENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECENT_P99_NS_FIELD_NUMBER: _ClassVar[int]
    RECENT_SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    REGRESSION_RATIO_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SPIKE_RATIO_FIELD_NUMBER: _ClassVar[int]
    TAIL_RATIO_FIELD_NUMBER: _ClassVar[int]
    baseline_p99_ns: float
    count: int
    errors: int
    exemplars: _containers.RepeatedCompositeFieldContainer[Call]
    function: str
    max_ns: float
    p50_ns: float
    p99_ns: float
    reasons: _containers.RepeatedScalarFieldContainer[str]
    recent_count: int
    recent_p99_ns: float
    recent_since_unix_nano: int
    regression_ratio: float
    score: float
    spike_ratio: float
    tail_ratio: float
    def __init__(self, function: _Optional[str] = ..., score: _Optional[float] = ..., reasons: _Optional[_Iterable[str]] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., p50_ns: _Optional[float] = ..., p99_ns: _Optional[float] = ..., max_ns: _Optional[float] = ..., tail_ratio: _Optional[float] = ..., spike_ratio: _Optional[float] = ..., recent_since_unix_nano: _Optional[int] = ..., recent_count: _Optional[int] = ..., recent_p99_ns: _Optional[float] = ..., baseline_p99_ns: _Optional[float] = ..., regression_ratio: _Optional[float] = ..., exemplars: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class AttributeFinding(_message.Message):
    __slots__ = ["baseline", "baseline_total", "examples", "key", "lift", "score", "slow", "slow_total", "value", "z"]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LIFT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SLOW_FIELD_NUMBER: _ClassVar[int]
    SLOW_TOTAL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    baseline: int
    baseline_total: int
    examples: _containers.RepeatedCompositeFieldContainer[Call]
    key: str
    lift: float
    score: float
    slow: int
    slow_total: int
    value: str
    z: float
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., slow: _Optional[int] = ..., baseline: _Optional[int] = ..., slow_total: _Optional[int] = ..., baseline_total: _Optional[int] = ..., score: _Optional[float] = ..., lift: _Optional[float] = ..., z: _Optional[float] = ..., examples: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class Call(_message.Message):
    __slots__ = ["attributes", "attributes_json", "duration_ns", "function", "kind", "parent_span_id", "resource", "resource_json", "service", "span_id", "start_unix_nano", "status", "trace_id"]
    class AttributesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ResourceEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_JSON_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.ScalarMap[str, str]
    attributes_json: str
    duration_ns: int
    function: str
    kind: SpanKind
    parent_span_id: str
    resource: _containers.ScalarMap[str, str]
    resource_json: str
    service: str
    span_id: str
    start_unix_nano: int
    status: int
    trace_id: str
    def __init__(self, function: _Optional[str] = ..., service: _Optional[str] = ..., start_unix_nano: _Optional[int] = ..., duration_ns: _Optional[int] = ..., status: _Optional[int] = ..., kind: _Optional[_Union[SpanKind, str]] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., parent_span_id: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., attributes_json: _Optional[str] = ..., resource: _Optional[_Mapping[str, str]] = ..., resource_json: _Optional[str] = ...) -> None: ...

class CallList(_message.Message):
    __slots__ = ["calls"]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    def __init__(self, calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class ChildFinding(_message.Message):
    __slots__ = ["baseline_calls", "baseline_children", "baseline_parent_time_ns", "baseline_time_ns", "baseline_total", "examples", "function", "slow_calls", "slow_children", "slow_parent_time_ns", "slow_time_ns", "slow_total"]
    BASELINE_CALLS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_CHILDREN_FIELD_NUMBER: _ClassVar[int]
    BASELINE_PARENT_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    SLOW_CALLS_FIELD_NUMBER: _ClassVar[int]
    SLOW_CHILDREN_FIELD_NUMBER: _ClassVar[int]
    SLOW_PARENT_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SLOW_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SLOW_TOTAL_FIELD_NUMBER: _ClassVar[int]
    baseline_calls: int
    baseline_children: int
    baseline_parent_time_ns: int
    baseline_time_ns: int
    baseline_total: int
    examples: _containers.RepeatedCompositeFieldContainer[Call]
    function: str
    slow_calls: int
    slow_children: int
    slow_parent_time_ns: int
    slow_time_ns: int
    slow_total: int
    def __init__(self, function: _Optional[str] = ..., slow_calls: _Optional[int] = ..., baseline_calls: _Optional[int] = ..., slow_children: _Optional[int] = ..., baseline_children: _Optional[int] = ..., slow_time_ns: _Optional[int] = ..., baseline_time_ns: _Optional[int] = ..., slow_total: _Optional[int] = ..., baseline_total: _Optional[int] = ..., slow_parent_time_ns: _Optional[int] = ..., baseline_parent_time_ns: _Optional[int] = ..., examples: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class ExplainKeyCounts(_message.Message):
    __slots__ = ["baseline", "hashes", "key", "slow", "values"]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SLOW_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    baseline: _containers.RepeatedScalarFieldContainer[int]
    hashes: _containers.RepeatedScalarFieldContainer[int]
    key: str
    slow: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., slow: _Optional[_Iterable[int]] = ..., baseline: _Optional[_Iterable[int]] = ..., hashes: _Optional[_Iterable[int]] = ...) -> None: ...

class ExplainPartial(_message.Message):
    __slots__ = ["attribute_examples", "attribute_named", "attribute_names", "baseline_time_ns", "before_calls", "before_slow", "child_examples", "children", "count", "examples", "first_start_unix_nano", "last_end_unix_nano", "last_start_unix_nano", "releases", "self_examples", "self_time", "series_calls", "series_slow", "slow_count", "slow_time_ns", "values"]
    ATTRIBUTE_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_NAMED_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_NAMES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_CALLS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SLOW_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    CHILD_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    FIRST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_END_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    SELF_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    SELF_TIME_FIELD_NUMBER: _ClassVar[int]
    SERIES_CALLS_FIELD_NUMBER: _ClassVar[int]
    SERIES_SLOW_FIELD_NUMBER: _ClassVar[int]
    SLOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    SLOW_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    attribute_examples: _containers.RepeatedCompositeFieldContainer[CallList]
    attribute_named: _containers.RepeatedScalarFieldContainer[bool]
    attribute_names: _containers.RepeatedScalarFieldContainer[str]
    baseline_time_ns: int
    before_calls: _containers.RepeatedScalarFieldContainer[int]
    before_slow: _containers.RepeatedScalarFieldContainer[int]
    child_examples: _containers.RepeatedCompositeFieldContainer[WeightedCalls]
    children: _containers.RepeatedCompositeFieldContainer[ChildFinding]
    count: int
    examples: _containers.RepeatedCompositeFieldContainer[Call]
    first_start_unix_nano: int
    last_end_unix_nano: int
    last_start_unix_nano: int
    releases: _containers.RepeatedCompositeFieldContainer[Release]
    self_examples: WeightedCalls
    self_time: ChildFinding
    series_calls: _containers.RepeatedScalarFieldContainer[int]
    series_slow: _containers.RepeatedScalarFieldContainer[int]
    slow_count: int
    slow_time_ns: int
    values: _containers.RepeatedCompositeFieldContainer[ExplainKeyCounts]
    def __init__(self, count: _Optional[int] = ..., slow_count: _Optional[int] = ..., slow_time_ns: _Optional[int] = ..., baseline_time_ns: _Optional[int] = ..., values: _Optional[_Iterable[_Union[ExplainKeyCounts, _Mapping]]] = ..., children: _Optional[_Iterable[_Union[ChildFinding, _Mapping]]] = ..., self_time: _Optional[_Union[ChildFinding, _Mapping]] = ..., series_calls: _Optional[_Iterable[int]] = ..., series_slow: _Optional[_Iterable[int]] = ..., releases: _Optional[_Iterable[_Union[Release, _Mapping]]] = ..., examples: _Optional[_Iterable[_Union[Call, _Mapping]]] = ..., attribute_examples: _Optional[_Iterable[_Union[CallList, _Mapping]]] = ..., child_examples: _Optional[_Iterable[_Union[WeightedCalls, _Mapping]]] = ..., self_examples: _Optional[_Union[WeightedCalls, _Mapping]] = ..., before_calls: _Optional[_Iterable[int]] = ..., before_slow: _Optional[_Iterable[int]] = ..., first_start_unix_nano: _Optional[int] = ..., last_start_unix_nano: _Optional[int] = ..., last_end_unix_nano: _Optional[int] = ..., attribute_names: _Optional[_Iterable[str]] = ..., attribute_named: _Optional[_Iterable[bool]] = ...) -> None: ...

class ExplainQuestion(_message.Message):
    __slots__ = ["attributes", "bounds", "children", "children_since_unix_nano", "children_until_unix_nano", "details", "function", "release_first_starts", "since_unix_nano", "step_ns", "threshold_ns", "until_unix_nano"]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_UNTIL_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIRST_STARTS_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    STEP_NS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedCompositeFieldContainer[ExplainValue]
    bounds: bool
    children: _containers.RepeatedScalarFieldContainer[str]
    children_since_unix_nano: int
    children_until_unix_nano: int
    details: bool
    function: str
    release_first_starts: _containers.RepeatedScalarFieldContainer[int]
    since_unix_nano: int
    step_ns: int
    threshold_ns: float
    until_unix_nano: int
    def __init__(self, function: _Optional[str] = ..., since_unix_nano: _Optional[int] = ..., until_unix_nano: _Optional[int] = ..., threshold_ns: _Optional[float] = ..., step_ns: _Optional[int] = ..., details: bool = ..., attributes: _Optional[_Iterable[_Union[ExplainValue, _Mapping]]] = ..., children: _Optional[_Iterable[str]] = ..., release_first_starts: _Optional[_Iterable[int]] = ..., bounds: bool = ..., children_since_unix_nano: _Optional[int] = ..., children_until_unix_nano: _Optional[int] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ["function", "since_unix_nano", "slow_ns", "slow_quantile", "until_unix_nano"]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SLOW_NS_FIELD_NUMBER: _ClassVar[int]
    SLOW_QUANTILE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    function: str
    since_unix_nano: int
    slow_ns: int
    slow_quantile: str
    until_unix_nano: int
    def __init__(self, function: _Optional[str] = ..., since_unix_nano: _Optional[int] = ..., until_unix_nano: _Optional[int] = ..., slow_quantile: _Optional[str] = ..., slow_ns: _Optional[int] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ["attributes", "baseline_time_ns", "children", "cluster_score", "count", "examples", "function", "quantile", "releases", "self_time", "series", "since_unix_nano", "slow_count", "slow_time_ns", "step_ns", "threshold_approximate", "threshold_ns", "until_unix_nano"]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SCORE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    SELF_TIME_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SLOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    SLOW_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    STEP_NS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_APPROXIMATE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeFinding]
    baseline_time_ns: int
    children: _containers.RepeatedCompositeFieldContainer[ChildFinding]
    cluster_score: float
    count: int
    examples: _containers.RepeatedCompositeFieldContainer[Call]
    function: str
    quantile: float
    releases: _containers.RepeatedCompositeFieldContainer[Release]
    self_time: ChildFinding
    series: _containers.RepeatedCompositeFieldContainer[SlowShareBucket]
    since_unix_nano: int
    slow_count: int
    slow_time_ns: int
    step_ns: int
    threshold_approximate: bool
    threshold_ns: float
    until_unix_nano: int
    def __init__(self, function: _Optional[str] = ..., since_unix_nano: _Optional[int] = ..., until_unix_nano: _Optional[int] = ..., quantile: _Optional[float] = ..., threshold_ns: _Optional[float] = ..., count: _Optional[int] = ..., slow_count: _Optional[int] = ..., slow_time_ns: _Optional[int] = ..., baseline_time_ns: _Optional[int] = ..., attributes: _Optional[_Iterable[_Union[AttributeFinding, _Mapping]]] = ..., children: _Optional[_Iterable[_Union[ChildFinding, _Mapping]]] = ..., self_time: _Optional[_Union[ChildFinding, _Mapping]] = ..., step_ns: _Optional[int] = ..., series: _Optional[_Iterable[_Union[SlowShareBucket, _Mapping]]] = ..., cluster_score: _Optional[float] = ..., releases: _Optional[_Iterable[_Union[Release, _Mapping]]] = ..., examples: _Optional[_Iterable[_Union[Call, _Mapping]]] = ..., threshold_approximate: bool = ...) -> None: ...

class ExplainValue(_message.Message):
    __slots__ = ["hash", "key", "value"]
    HASH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    hash: int
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., hash: _Optional[int] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ["attributes", "functions", "resource", "service", "since_unix_nano", "until_unix_nano"]
    class AttributesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ResourceEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.ScalarMap[str, str]
    functions: _containers.RepeatedScalarFieldContainer[str]
    resource: _containers.ScalarMap[str, str]
    service: str
    since_unix_nano: int
    until_unix_nano: int
    def __init__(self, functions: _Optional[_Iterable[str]] = ..., service: _Optional[str] = ..., since_unix_nano: _Optional[int] = ..., until_unix_nano: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ..., resource: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FunctionInfo(_message.Message):
    __slots__ = ["count", "errors", "first_start_unix_nano", "last_start_unix_nano", "name"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    FIRST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    count: int
    errors: int
    first_start_unix_nano: int
    last_start_unix_nano: int
    name: str
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., first_start_unix_nano: _Optional[int] = ..., last_start_unix_nano: _Optional[int] = ...) -> None: ...

class GetAnomaliesRequest(_message.Message):
    __slots__ = ["exemplars", "filter", "limit", "min_count", "recent_ns", "regression_threshold", "spike_threshold", "tail_threshold"]
    EXEMPLARS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECENT_NS_FIELD_NUMBER: _ClassVar[int]
    REGRESSION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SPIKE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TAIL_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    exemplars: int
    filter: Filter
    limit: int
    min_count: int
    recent_ns: int
    regression_threshold: float
    spike_threshold: float
    tail_threshold: float
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ..., min_count: _Optional[int] = ..., tail_threshold: _Optional[float] = ..., spike_threshold: _Optional[float] = ..., regression_threshold: _Optional[float] = ..., recent_ns: _Optional[int] = ..., limit: _Optional[int] = ..., exemplars: _Optional[int] = ...) -> None: ...

class GetAnomaliesResponse(_message.Message):
    __slots__ = ["anomalies"]
    ANOMALIES_FIELD_NUMBER: _ClassVar[int]
    anomalies: _containers.RepeatedCompositeFieldContainer[Anomaly]
    def __init__(self, anomalies: _Optional[_Iterable[_Union[Anomaly, _Mapping]]] = ...) -> None: ...

class GetHistogramRequest(_message.Message):
    __slots__ = ["exact", "filter", "function", "per_decade"]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    PER_DECADE_FIELD_NUMBER: _ClassVar[int]
    exact: bool
    filter: Filter
    function: str
    per_decade: int
    def __init__(self, function: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., per_decade: _Optional[int] = ..., exact: bool = ...) -> None: ...

class GetHistogramResponse(_message.Message):
    __slots__ = ["buckets", "count", "exact", "function", "per_decade"]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    PER_DECADE_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[HistogramBucket]
    count: int
    exact: bool
    function: str
    per_decade: int
    def __init__(self, function: _Optional[str] = ..., count: _Optional[int] = ..., per_decade: _Optional[int] = ..., exact: bool = ..., buckets: _Optional[_Iterable[_Union[HistogramBucket, _Mapping]]] = ...) -> None: ...

class GetSeriesRequest(_message.Message):
    __slots__ = ["exact", "filter", "group_by", "quantiles", "step_ns"]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    STEP_NS_FIELD_NUMBER: _ClassVar[int]
    exact: bool
    filter: Filter
    group_by: str
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    step_ns: int
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ..., step_ns: _Optional[int] = ..., group_by: _Optional[str] = ..., quantiles: _Optional[_Iterable[float]] = ..., exact: bool = ...) -> None: ...

class GetSeriesResponse(_message.Message):
    __slots__ = ["exact", "group_by", "quantiles", "series", "since_unix_nano", "step_ns", "until_unix_nano"]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    STEP_NS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    exact: bool
    group_by: str
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    series: _containers.RepeatedCompositeFieldContainer[Series]
    since_unix_nano: int
    step_ns: int
    until_unix_nano: int
    def __init__(self, group_by: _Optional[str] = ..., step_ns: _Optional[int] = ..., since_unix_nano: _Optional[int] = ..., until_unix_nano: _Optional[int] = ..., quantiles: _Optional[_Iterable[float]] = ..., exact: bool = ..., series: _Optional[_Iterable[_Union[Series, _Mapping]]] = ...) -> None: ...

class GetSlowestRequest(_message.Message):
    __slots__ = ["filter", "k"]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    filter: Filter
    k: int
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ..., k: _Optional[int] = ...) -> None: ...

class GetSlowestResponse(_message.Message):
    __slots__ = ["calls"]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    def __init__(self, calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ["exact", "filter", "group_by", "limit", "order_by", "quantiles"]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    exact: bool
    filter: Filter
    group_by: str
    limit: int
    order_by: str
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ..., group_by: _Optional[str] = ..., quantiles: _Optional[_Iterable[float]] = ..., exact: bool = ..., order_by: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ["exact", "group_by", "groups", "quantiles"]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    exact: bool
    group_by: str
    groups: _containers.RepeatedCompositeFieldContainer[GroupStats]
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, group_by: _Optional[str] = ..., quantiles: _Optional[_Iterable[float]] = ..., exact: bool = ..., groups: _Optional[_Iterable[_Union[GroupStats, _Mapping]]] = ...) -> None: ...

class GroupStats(_message.Message):
    __slots__ = ["count", "errors", "key", "max_ns", "mean_ns", "min_ns", "quantiles", "stddev_ns", "stderr_ns"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MAX_NS_FIELD_NUMBER: _ClassVar[int]
    MEAN_NS_FIELD_NUMBER: _ClassVar[int]
    MIN_NS_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    STDDEV_NS_FIELD_NUMBER: _ClassVar[int]
    STDERR_NS_FIELD_NUMBER: _ClassVar[int]
    count: int
    errors: int
    key: str
    max_ns: float
    mean_ns: float
    min_ns: float
    quantiles: _containers.RepeatedCompositeFieldContainer[Quantile]
    stddev_ns: float
    stderr_ns: float
    def __init__(self, key: _Optional[str] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., mean_ns: _Optional[float] = ..., stddev_ns: _Optional[float] = ..., stderr_ns: _Optional[float] = ..., min_ns: _Optional[float] = ..., max_ns: _Optional[float] = ..., quantiles: _Optional[_Iterable[_Union[Quantile, _Mapping]]] = ...) -> None: ...

class HistogramBucket(_message.Message):
    __slots__ = ["count", "lower_ns", "upper_ns"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    LOWER_NS_FIELD_NUMBER: _ClassVar[int]
    UPPER_NS_FIELD_NUMBER: _ClassVar[int]
    count: int
    lower_ns: float
    upper_ns: float
    def __init__(self, lower_ns: _Optional[float] = ..., upper_ns: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class ListFunctionsRequest(_message.Message):
    __slots__ = ["filter"]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: Filter
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class ListFunctionsResponse(_message.Message):
    __slots__ = ["first_start_unix_nano", "functions", "last_start_unix_nano"]
    FIRST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    first_start_unix_nano: int
    functions: _containers.RepeatedCompositeFieldContainer[FunctionInfo]
    last_start_unix_nano: int
    def __init__(self, functions: _Optional[_Iterable[_Union[FunctionInfo, _Mapping]]] = ..., first_start_unix_nano: _Optional[int] = ..., last_start_unix_nano: _Optional[int] = ...) -> None: ...

class PackedSummaries(_message.Message):
    __slots__ = ["cell", "count", "count_width", "counts", "errors", "keys", "lengths", "m2", "max", "min", "sum", "zero"]
    CELL_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    COUNT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    M2_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    ZERO_FIELD_NUMBER: _ClassVar[int]
    cell: bytes
    count: bytes
    count_width: int
    counts: bytes
    errors: bytes
    keys: bytes
    lengths: bytes
    m2: bytes
    max: bytes
    min: bytes
    sum: bytes
    zero: bytes
    def __init__(self, cell: _Optional[bytes] = ..., errors: _Optional[bytes] = ..., count: _Optional[bytes] = ..., sum: _Optional[bytes] = ..., m2: _Optional[bytes] = ..., min: _Optional[bytes] = ..., max: _Optional[bytes] = ..., zero: _Optional[bytes] = ..., lengths: _Optional[bytes] = ..., keys: _Optional[bytes] = ..., counts: _Optional[bytes] = ..., count_width: _Optional[int] = ...) -> None: ...

class PartialCells(_message.Message):
    __slots__ = ["cell_ids", "durations", "errors", "exact", "keys", "packed", "per_key", "rows", "statuses", "summaries"]
    CELL_IDS_FIELD_NUMBER: _ClassVar[int]
    DURATIONS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    PER_KEY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    cell_ids: bytes
    durations: bytes
    errors: _containers.RepeatedScalarFieldContainer[int]
    exact: bool
    keys: _containers.RepeatedScalarFieldContainer[str]
    packed: PackedSummaries
    per_key: int
    rows: int
    statuses: bytes
    summaries: bytes
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., per_key: _Optional[int] = ..., summaries: _Optional[bytes] = ..., errors: _Optional[_Iterable[int]] = ..., exact: bool = ..., rows: _Optional[int] = ..., cell_ids: _Optional[bytes] = ..., durations: _Optional[bytes] = ..., statuses: _Optional[bytes] = ..., packed: _Optional[_Union[PackedSummaries, _Mapping]] = ...) -> None: ...

class PartialRequest(_message.Message):
    __slots__ = ["explain", "histogram", "list_functions", "per_function", "series", "slowest", "stats", "summary_encoding", "time_range", "version", "view"]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    LIST_FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    PER_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    SLOWEST_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_ENCODING_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    explain: ExplainQuestion
    histogram: GetHistogramRequest
    list_functions: ListFunctionsRequest
    per_function: _containers.RepeatedScalarFieldContainer[str]
    series: GetSeriesRequest
    slowest: GetSlowestRequest
    stats: GetStatsRequest
    summary_encoding: int
    time_range: TimeRangeQuestion
    version: int
    view: QuestionView
    def __init__(self, version: _Optional[int] = ..., time_range: _Optional[_Union[TimeRangeQuestion, _Mapping]] = ..., list_functions: _Optional[_Union[ListFunctionsRequest, _Mapping]] = ..., stats: _Optional[_Union[GetStatsRequest, _Mapping]] = ..., series: _Optional[_Union[GetSeriesRequest, _Mapping]] = ..., histogram: _Optional[_Union[GetHistogramRequest, _Mapping]] = ..., slowest: _Optional[_Union[GetSlowestRequest, _Mapping]] = ..., explain: _Optional[_Union[ExplainQuestion, _Mapping]] = ..., per_function: _Optional[_Iterable[str]] = ..., summary_encoding: _Optional[int] = ..., view: _Optional[_Union[QuestionView, _Mapping]] = ...) -> None: ...

class PartialResponse(_message.Message):
    __slots__ = ["calls", "cells", "explain", "first_start_unix_nano", "functions", "held_view", "histogram", "last_start_unix_nano", "per_function", "unknown_functions", "version"]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    FIRST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    HELD_VIEW_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    LAST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    PER_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    cells: PartialCells
    explain: ExplainPartial
    first_start_unix_nano: int
    functions: _containers.RepeatedCompositeFieldContainer[FunctionInfo]
    held_view: bool
    histogram: GetHistogramResponse
    last_start_unix_nano: int
    per_function: _containers.RepeatedCompositeFieldContainer[CallList]
    unknown_functions: _containers.RepeatedScalarFieldContainer[str]
    version: int
    def __init__(self, version: _Optional[int] = ..., unknown_functions: _Optional[_Iterable[str]] = ..., first_start_unix_nano: _Optional[int] = ..., last_start_unix_nano: _Optional[int] = ..., functions: _Optional[_Iterable[_Union[FunctionInfo, _Mapping]]] = ..., cells: _Optional[_Union[PartialCells, _Mapping]] = ..., histogram: _Optional[_Union[GetHistogramResponse, _Mapping]] = ..., calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ..., per_function: _Optional[_Iterable[_Union[CallList, _Mapping]]] = ..., explain: _Optional[_Union[ExplainPartial, _Mapping]] = ..., held_view: bool = ...) -> None: ...

class Quantile(_message.Message):
    __slots__ = ["q", "value_ns"]
    Q_FIELD_NUMBER: _ClassVar[int]
    VALUE_NS_FIELD_NUMBER: _ClassVar[int]
    q: float
    value_ns: float
    def __init__(self, q: _Optional[float] = ..., value_ns: _Optional[float] = ...) -> None: ...

class QuestionView(_message.Message):
    __slots__ = ["first_round", "hold_ms", "last_round", "question_id"]
    FIRST_ROUND_FIELD_NUMBER: _ClassVar[int]
    HOLD_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ROUND_FIELD_NUMBER: _ClassVar[int]
    QUESTION_ID_FIELD_NUMBER: _ClassVar[int]
    first_round: bool
    hold_ms: int
    last_round: bool
    question_id: bytes
    def __init__(self, question_id: _Optional[bytes] = ..., first_round: bool = ..., last_round: bool = ..., hold_ms: _Optional[int] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ["after_calls", "after_slow", "before_calls", "before_slow", "calls", "first_start_unix_nano", "key", "last_start_unix_nano", "lines_up", "slow", "version", "z"]
    AFTER_CALLS_FIELD_NUMBER: _ClassVar[int]
    AFTER_SLOW_FIELD_NUMBER: _ClassVar[int]
    BEFORE_CALLS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SLOW_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    FIRST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LAST_START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LINES_UP_FIELD_NUMBER: _ClassVar[int]
    SLOW_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    after_calls: int
    after_slow: int
    before_calls: int
    before_slow: int
    calls: int
    first_start_unix_nano: int
    key: str
    last_start_unix_nano: int
    lines_up: bool
    slow: int
    version: str
    z: float
    def __init__(self, key: _Optional[str] = ..., version: _Optional[str] = ..., calls: _Optional[int] = ..., slow: _Optional[int] = ..., first_start_unix_nano: _Optional[int] = ..., last_start_unix_nano: _Optional[int] = ..., before_calls: _Optional[int] = ..., before_slow: _Optional[int] = ..., after_calls: _Optional[int] = ..., after_slow: _Optional[int] = ..., z: _Optional[float] = ..., lines_up: bool = ...) -> None: ...

class Series(_message.Message):
    __slots__ = ["key", "points"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    key: str
    points: _containers.RepeatedCompositeFieldContainer[SeriesPoint]
    def __init__(self, key: _Optional[str] = ..., points: _Optional[_Iterable[_Union[SeriesPoint, _Mapping]]] = ...) -> None: ...

class SeriesPoint(_message.Message):
    __slots__ = ["count", "errors", "max_ns", "mean_ns", "min_ns", "quantiles_ns", "start_unix_nano"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MAX_NS_FIELD_NUMBER: _ClassVar[int]
    MEAN_NS_FIELD_NUMBER: _ClassVar[int]
    MIN_NS_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_NS_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    count: int
    errors: int
    max_ns: float
    mean_ns: float
    min_ns: float
    quantiles_ns: _containers.RepeatedScalarFieldContainer[float]
    start_unix_nano: int
    def __init__(self, start_unix_nano: _Optional[int] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., mean_ns: _Optional[float] = ..., min_ns: _Optional[float] = ..., max_ns: _Optional[float] = ..., quantiles_ns: _Optional[_Iterable[float]] = ...) -> None: ...

class SlowShareBucket(_message.Message):
    __slots__ = ["calls", "slow", "start_unix_nano"]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    SLOW_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    calls: int
    slow: int
    start_unix_nano: int
    def __init__(self, start_unix_nano: _Optional[int] = ..., calls: _Optional[int] = ..., slow: _Optional[int] = ...) -> None: ...

class TimeRangeQuestion(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class WeightedCalls(_message.Message):
    __slots__ = ["calls", "weights"]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    weights: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ..., weights: _Optional[_Iterable[int]] = ...) -> None: ...

class SpanKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
