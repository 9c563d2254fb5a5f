"""Run-time settings, read from the command line or the environment."""

import os

import msgspec


class Settings(msgspec.Struct, kw_only=True):
    """Everything a deployment can tune."""

    db_path: str = "data/studyvisit.db"
    # Sync limits, checked before any work is done (413 past them).
    max_push_bytes: int = 1024 * 1024
    max_push_mutations: int = 1000
    pull_default_limit: int = 500
    pull_max_limit: int = 5000
    metrics_enabled: bool = True
    # Photos and documents attached to notes. "" means the database's own directory, so blobs land
    # beside it in <db dir>/blobs (with partial/, previews/ and tmp/ next to that).
    data_dir: str = ""
    # One blob's size limit (413 past it, checked before the body is read when the request says its size).
    max_blob_bytes: int = 20 * 1024 * 1024
    # Storage quotas (507 past them): the bytes one account's uploads, and one event's, may hold.
    max_account_blob_bytes: int = 200 * 1024 * 1024
    max_event_blob_bytes: int = 5 * 1024 * 1024 * 1024

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Defaults, then ``STUDYVISIT_*`` environment variables, then explicit overrides."""
        values: dict[str, object] = {}
        for field in cls.__struct_fields__:
            env = os.environ.get("STUDYVISIT_" + field.upper())
            if env is not None:
                values[field] = env
        values.update(
            {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in overrides.items() if v is not None}
        )
        return msgspec.convert(values, cls, strict=False)
