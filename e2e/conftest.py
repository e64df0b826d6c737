"""Both helper directories on the import path, whichever tests run: the cluster tests in
e2e/compat use the topic-link helpers in e2e/warehouse and the other way round."""

import sys
from pathlib import Path

for sub in ("compat", "warehouse"):
    path = str(Path(__file__).parent / sub)
    if path not in sys.path:
        sys.path.insert(0, path)
