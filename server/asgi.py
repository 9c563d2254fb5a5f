"""The ASGI entry point for uvicorn workers; settings come from ``STUDYVISIT_*`` variables."""

import logging
import sys

from server.app import create_app
from server.observability import BufferedLineHandler

# Access-log lines are JSON already: print them as they are, on stderr, in batches (a write per line
# cost a cached read a tenth of its time); a killed worker loses at most the last 0.2 s of lines.
# No formatter: logging's default writes the message alone, and lets write_access_line skip the record.
_handler = BufferedLineHandler(sys.stderr, interval_s=0.2)
logging.getLogger("studyvisit.access").addHandler(_handler)
logging.getLogger("studyvisit.access").setLevel(logging.INFO)

app = create_app()
