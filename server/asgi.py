"""The ASGI entry point for uvicorn workers; settings come from ``STUDYVISIT_*`` variables."""

from server.app import create_app

app = create_app()
