"""What a question asks when its asker does not say: one value each, for every interface.

The query layer, the gRPC server and client, the dashboard's API and the CLI all take these, so a
question left at its defaults gets the same answer whichever way it is asked. (The caps on what a
question may ask are in :mod:`kronicler.query.limits`.)
"""

from __future__ import annotations

#: Slowest calls returned.
SLOWEST_K = 10
#: Histogram buckets per power of ten.
PER_DECADE = 10
#: Anomaly findings returned, and slowest calls attached to each.
ANOMALY_LIMIT = 20
ANOMALY_EXEMPLARS = 3
