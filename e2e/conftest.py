"""Both helper directories on the import path, whichever tests run: the cluster tests in
e2e/compat use the topic-link helpers in e2e/warehouse and the other way round."""

import os
import sys
from pathlib import Path

for sub in ("compat", "warehouse"):
    path = str(Path(__file__).parent / sub)
    if path not in sys.path:
        sys.path.insert(0, path)

# Every broker these tests start preallocates file-WAL segments; at the production size (64 MiB,
# two spare) a run of the suites keeps gigabytes on disk. Small segments exercise the same code
# (segment roll-over happens more often, which is the point of testing it) at an eighth of the
# footprint. A test that needs the default sets the variable itself.
os.environ.setdefault("AUTOMQ_FILE_WAL_SEGMENT_BYTES", str(8 << 20))
