"""The ASGI entry point for uvicorn workers; settings come from ``STUDYVISIT_*`` variables."""

import logging
import sys

from server.app import create_app

# Access-log lines are JSON already: print them as they are, on stderr.
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(message)s"))
logging.getLogger("studyvisit.access").addHandler(_handler)
logging.getLogger("studyvisit.access").setLevel(logging.INFO)

app = create_app()
