"""The PostgreSQL schema: versioned migrations of its own (the SQLite ones are in ../migrations.py).

The tables and columns are SQLite's, so that a database moves between the two whole; the types are
PostgreSQL's own: `jsonb` for JSON, `boolean` for flags, `timestamptz` for instants the server
writes, `bytea` for bytes, identity columns for counters. Times a client sent (a visit's start with
its offset, a note's `captured_at`, a device's clock) stay `text`: their offset is information that
`timestamptz` would drop. A test (tests/test_pg_schema.py) fails when a SQLite table or column has
no counterpart here.

The change feed is numbered per event by a feed clock taken at commit, not by a sequence
(docs/sync-protocol.md §5.2): `changes.seq` is given out from `feed_clocks`.
"""

from typing import LiteralString, NamedTuple


class PgMigration(NamedTuple):
    version: int
    name: str
    sql: LiteralString


PG_MIGRATIONS: list[PgMigration] = [
    PgMigration(
        1,
        "the schema of SQLite migrations 1-8",
        """
        CREATE TABLE events (
            id text PRIMARY KEY,
            title text NOT NULL,
            starts_on date NOT NULL,
            ends_on date NOT NULL,
            timezone text NOT NULL,
            venue text NOT NULL DEFAULT '',
            venue_site_id text,
            version bigint NOT NULL DEFAULT 1,
            updated_at timestamptz,
            content_version bigint NOT NULL DEFAULT 1,
            purged_seq bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE sites (
            event_id text NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            id text NOT NULL,
            name text NOT NULL,
            kind text NOT NULL,
            description jsonb NOT NULL DEFAULT '{}',
            official_name text,
            legal_form text,
            address text NOT NULL DEFAULT '',
            postcode text NOT NULL DEFAULT '',
            city text NOT NULL DEFAULT '',
            country text NOT NULL DEFAULT 'IT',
            district text NOT NULL DEFAULT '',
            lat double precision NOT NULL,
            lon double precision NOT NULL,
            coord_source text NOT NULL DEFAULT 'estimated',
            coord_note text NOT NULL DEFAULT '',
            themes jsonb NOT NULL DEFAULT '[]',
            accessibility text NOT NULL DEFAULT '',
            contact text NOT NULL DEFAULT '',
            website text NOT NULL DEFAULT '',
            opening_hours jsonb NOT NULL DEFAULT '[]',
            opening_hours_note text NOT NULL DEFAULT '',
            meeting_point text NOT NULL DEFAULT '',
            sources jsonb NOT NULL DEFAULT '[]',
            conflicts jsonb NOT NULL DEFAULT '[]',
            version bigint NOT NULL DEFAULT 1,
            updated_at timestamptz,
            PRIMARY KEY (event_id, id)
        );
        CREATE TABLE groups (
            event_id text NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            id text NOT NULL,
            name text NOT NULL,
            version bigint NOT NULL DEFAULT 1,
            PRIMARY KEY (event_id, id)
        );
        CREATE TABLE visits (
            event_id text NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            id text NOT NULL,
            number integer NOT NULL,
            title text NOT NULL,
            kind text NOT NULL DEFAULT 'visit',
            -- As the organizers wrote them, with their offset; starts_utc is the instant.
            starts_at text NOT NULL,
            ends_at text NOT NULL,
            starts_utc timestamptz NOT NULL,
            group_ids jsonb NOT NULL DEFAULT '[]',
            site_id text,
            venue text NOT NULL DEFAULT '',
            meeting_point text NOT NULL DEFAULT '',
            transport text NOT NULL DEFAULT 'none',
            notes jsonb NOT NULL DEFAULT '{}',
            status text NOT NULL DEFAULT 'scheduled',
            feedback_closed boolean NOT NULL DEFAULT false,
            conflicts jsonb NOT NULL DEFAULT '[]',
            version bigint NOT NULL DEFAULT 1,
            updated_at timestamptz,
            PRIMARY KEY (event_id, id),
            UNIQUE (event_id, number),
            FOREIGN KEY (event_id, site_id) REFERENCES sites(event_id, id)
        );
        CREATE INDEX visits_by_start ON visits(event_id, starts_utc);
        CREATE TABLE questions (
            event_id text NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            id text NOT NULL,
            kind text NOT NULL,
            texts jsonb NOT NULL DEFAULT '{}',
            choices jsonb NOT NULL DEFAULT '[]',
            position integer NOT NULL DEFAULT 0,
            version bigint NOT NULL DEFAULT 1,
            PRIMARY KEY (event_id, id)
        );
        CREATE TABLE accounts (
            id text PRIMARY KEY,
            event_id text NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            name text NOT NULL,
            role text NOT NULL CHECK (role IN ('participant', 'host', 'organizer')),
            group_id text,
            language text NOT NULL DEFAULT 'en',
            country text,
            organization text NOT NULL DEFAULT '',
            -- SHA-256 of the bearer token; the token itself is never stored.
            token_hash text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL,
            expires_at timestamptz,
            retired_at timestamptz,
            -- Readable: GET /api/v1/me shows the feed URL again. Its 16 characters after 'svf_' select the row.
            feed_token text,
            FOREIGN KEY (event_id, group_id) REFERENCES groups(event_id, id)
        );
        CREATE UNIQUE INDEX accounts_by_feed_selector ON accounts ((substr(feed_token, 5, 16)));
        CREATE TABLE account_sites (
            account_id text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            event_id text NOT NULL,
            site_id text NOT NULL,
            PRIMARY KEY (account_id, site_id),
            FOREIGN KEY (event_id, site_id) REFERENCES sites(event_id, id)
        );
        CREATE TABLE notes (
            id text PRIMARY KEY,
            event_id text NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            author_id text NOT NULL REFERENCES accounts(id),
            visit_id text,
            site_id text,
            body text NOT NULL DEFAULT '',
            tags jsonb NOT NULL DEFAULT '[]',
            lat double precision,
            lon double precision,
            captured_at text,
            share_with_organizers boolean NOT NULL DEFAULT false,
            deleted boolean NOT NULL DEFAULT false,
            origin_client text,
            version bigint NOT NULL DEFAULT 1,
            conflicts jsonb NOT NULL DEFAULT '[]',
            updated_at timestamptz NOT NULL,
            attachments jsonb NOT NULL DEFAULT '[]',
            -- The device's clock as sent (display only, never trusted), and the server's on arrival.
            client_time text,
            received_at timestamptz,
            clock_skewed boolean NOT NULL DEFAULT false
        );
        CREATE INDEX notes_by_author ON notes(author_id);
        CREATE INDEX notes_shared ON notes(event_id, share_with_organizers);
        CREATE TABLE feedback (
            id text PRIMARY KEY,
            event_id text NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            author_id text NOT NULL REFERENCES accounts(id),
            visit_id text NOT NULL,
            site_id text,
            rating integer,
            answers jsonb NOT NULL DEFAULT '{}',
            comment text NOT NULL DEFAULT '',
            origin_client text,
            version bigint NOT NULL DEFAULT 1,
            conflicts jsonb NOT NULL DEFAULT '[]',
            updated_at timestamptz NOT NULL,
            client_time text,
            received_at timestamptz,
            clock_skewed boolean NOT NULL DEFAULT false,
            UNIQUE (author_id, visit_id)
        );
        CREATE INDEX feedback_by_visit ON feedback(event_id, visit_id);
        CREATE TABLE feedback_aliases (
            alias_id text PRIMARY KEY,
            feedback_id text NOT NULL REFERENCES feedback(id)
        );
        CREATE TABLE sync_clients (
            account_id text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            client_id text NOT NULL,
            last_mutation_id bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (account_id, client_id)
        );
        CREATE TABLE sync_results (
            account_id text NOT NULL,
            client_id text NOT NULL,
            mutation_id bigint NOT NULL,
            result bytea NOT NULL,
            PRIMARY KEY (account_id, client_id, mutation_id)
        );
        -- Each event's next feed position, taken by a writing transaction as its last statement and
        -- held (locked) until it commits: positions are given in commit order (sync-protocol §5.2).
        CREATE TABLE feed_clocks (
            event_id text PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
            seq bigint NOT NULL DEFAULT 0
        );
        -- The pull feed: one row per (record, audience), its seq renewed on every change.
        CREATE TABLE changes (
            event_id text NOT NULL,
            seq bigint NOT NULL,
            entity text NOT NULL,
            entity_id text NOT NULL,
            audience text NOT NULL,
            PRIMARY KEY (event_id, seq)
        );
        CREATE UNIQUE INDEX changes_key ON changes(event_id, entity, entity_id, audience);
        CREATE INDEX changes_feed ON changes(event_id, audience, seq) INCLUDE (entity, entity_id);
        CREATE TABLE purge_marks (
            event_id text NOT NULL,
            audience text NOT NULL,
            seq bigint NOT NULL,
            PRIMARY KEY (event_id, audience)
        );
        CREATE TABLE history (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            event_id text NOT NULL,
            entity text NOT NULL,
            entity_id text NOT NULL,
            version bigint NOT NULL,
            account_id text,
            client_id text,
            at timestamptz NOT NULL,
            changes jsonb NOT NULL,
            flagged text,
            reverted_by bigint
        );
        CREATE INDEX history_by_record ON history(event_id, entity, entity_id, version);
        CREATE TABLE blobs (
            sha256 text PRIMARY KEY,
            size bigint NOT NULL,
            media_type text NOT NULL,
            created_at timestamptz NOT NULL
        );
        CREATE TABLE note_blobs (
            sha256 text NOT NULL,
            note_id text NOT NULL REFERENCES notes(id) ON DELETE CASCADE,
            event_id text NOT NULL,
            PRIMARY KEY (sha256, note_id)
        );
        CREATE INDEX note_blobs_by_note ON note_blobs(note_id);
        CREATE TABLE blob_owners (
            event_id text NOT NULL,
            account_id text NOT NULL,
            sha256 text NOT NULL,
            size bigint NOT NULL,
            created_at timestamptz NOT NULL,
            PRIMARY KEY (event_id, account_id, sha256)
        );
        CREATE INDEX blob_owners_by_blob ON blob_owners(event_id, sha256);
        CREATE TABLE health_probe (id integer PRIMARY KEY, at timestamptz NOT NULL);
        """,
    ),
    PgMigration(
        2,
        "how far each device has pulled; the feed position of each visit change (SQLite 9)",
        """
        ALTER TABLE sync_clients ADD COLUMN pulled_seq bigint NOT NULL DEFAULT 0;
        ALTER TABLE sync_clients ADD COLUMN pulled_at timestamptz;
        ALTER TABLE history ADD COLUMN seq bigint;
        -- A visit change's feed row gets its position: the newest history entry of that visit without
        -- one takes it. On PostgreSQL a feed row is updated in place (an upsert), so updates count too.
        CREATE FUNCTION history_feed_seq() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE history SET seq = NEW.seq
            WHERE id = (
                SELECT max(id) FROM history
                WHERE event_id = NEW.event_id AND entity = 'visit' AND entity_id = NEW.entity_id
            ) AND seq IS NULL;
            RETURN NULL;
        END;
        $$;
        CREATE TRIGGER history_feed_seq AFTER INSERT OR UPDATE OF seq ON changes
            FOR EACH ROW WHEN (NEW.entity = 'visit' AND NEW.audience = 'all')
            EXECUTE FUNCTION history_feed_seq();
        """,
    ),
    PgMigration(
        3,
        "the order notes reached the server, as a column (SQLite 10)",
        """
        ALTER TABLE notes ADD COLUMN arrival bigint GENERATED BY DEFAULT AS IDENTITY;
        CREATE INDEX notes_by_arrival ON notes(event_id, arrival);
        """,
    ),
    PgMigration(
        4,
        "every change to a visit in one transaction gets the transaction's feed position",
        """
        -- Feed rows are written once per record at commit (PgTx.write_feed), not once per change as
        -- on SQLite: every entry of the visit still without a position takes this one, not just the
        -- newest (an older one would never be told as pulled).
        CREATE OR REPLACE FUNCTION history_feed_seq() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE history SET seq = NEW.seq
            WHERE event_id = NEW.event_id AND entity = 'visit' AND entity_id = NEW.entity_id AND seq IS NULL;
            RETURN NULL;
        END;
        $$;
        """,
    ),
    PgMigration(
        5,
        "blob bytes in the database: complete blobs, unfinished uploads and previews as bytea rows",
        """
        -- The database blob store (server/storage/pg/blobs.py): chunks of at most 1 MiB, each row
        -- starting at byte `start` of its blob, so a range is read row by row, never whole.
        CREATE TABLE blob_chunks (
            sha256 text NOT NULL,
            start bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (sha256, start)
        );
        -- Photos and PDFs are compressed already: out of line, without pglz's try at compressing them.
        ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
        -- An upload being received: one account's resumable upload of one blob (`resumable`), or a
        -- whole upload's chunks, kept apart until its hash is checked. `acked` bytes are committed.
        CREATE TABLE blob_uploads (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id text NOT NULL,
            account_id text NOT NULL,
            sha256 text NOT NULL,
            resumable boolean NOT NULL,
            total bigint NOT NULL,
            acked bigint NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE UNIQUE INDEX blob_uploads_by_owner ON blob_uploads(event_id, account_id, sha256) WHERE resumable;
        CREATE INDEX blob_uploads_by_age ON blob_uploads(updated_at);
        CREATE TABLE upload_chunks (
            upload_id bigint NOT NULL REFERENCES blob_uploads(id) ON DELETE CASCADE,
            start bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (upload_id, start)
        );
        ALTER TABLE upload_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
        CREATE TABLE blob_previews (
            sha256 text NOT NULL,
            width integer NOT NULL,
            extension text NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (sha256, width, extension)
        );
        """,
    ),
    PgMigration(
        6,
        "each feed row's encoded change and summary share, written with the row (SQLite 11)",
        """
        -- As on SQLite: the JSON a pull sends for the row, or NULL where it is shaped at pull time.
        -- Written by PgTx.write_feed before it takes the feed clock, so the clock is held no longer.
        ALTER TABLE changes ADD COLUMN payload bytea;
        ALTER TABLE changes ADD COLUMN counts smallint;
        ALTER TABLE changes ADD COLUMN share_hi bigint;
        ALTER TABLE changes ADD COLUMN share_lo bigint;
        """,
    ),
]
