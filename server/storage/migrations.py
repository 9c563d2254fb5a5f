"""Versioned schema migrations, applied in order at start-up.

A migration is never edited once released: add a new one instead. Each runs in the same
transaction as the row that records it, so a crash leaves either both or neither.
"""

from typing import NamedTuple


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "events, sites, itinerary, accounts",
        """
        CREATE TABLE events (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            starts_on TEXT NOT NULL,
            ends_on TEXT NOT NULL,
            timezone TEXT NOT NULL,
            venue TEXT NOT NULL DEFAULT '',
            venue_site_id TEXT,
            version INTEGER NOT NULL DEFAULT 1,
            updated_at TEXT,
            -- Bumped by every change to what the read API serves; part of every cache key.
            content_version INTEGER NOT NULL DEFAULT 1,
            -- Pull cursors below this sequence number may have missed purged tombstones (410).
            purged_seq INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE sites (
            event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '{}',
            official_name TEXT,
            legal_form TEXT,
            address TEXT NOT NULL DEFAULT '',
            postcode TEXT NOT NULL DEFAULT '',
            city TEXT NOT NULL DEFAULT '',
            country TEXT NOT NULL DEFAULT 'IT',
            district TEXT NOT NULL DEFAULT '',
            lat REAL NOT NULL,
            lon REAL NOT NULL,
            coord_source TEXT NOT NULL DEFAULT 'estimated',
            coord_note TEXT NOT NULL DEFAULT '',
            themes TEXT NOT NULL DEFAULT '[]',
            accessibility TEXT NOT NULL DEFAULT '',
            contact TEXT NOT NULL DEFAULT '',
            website TEXT NOT NULL DEFAULT '',
            opening_hours TEXT NOT NULL DEFAULT '[]',
            opening_hours_note TEXT NOT NULL DEFAULT '',
            meeting_point TEXT NOT NULL DEFAULT '',
            sources TEXT NOT NULL DEFAULT '[]',
            -- Losing concurrent edits, kept until a host or organizer resolves them.
            conflicts TEXT NOT NULL DEFAULT '[]',
            version INTEGER NOT NULL DEFAULT 1,
            updated_at TEXT,
            PRIMARY KEY (event_id, id)
        );
        CREATE TABLE groups (
            event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (event_id, id)
        );
        CREATE TABLE visits (
            event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            id TEXT NOT NULL,
            number INTEGER NOT NULL,
            title TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'visit',
            starts_at TEXT NOT NULL,
            ends_at TEXT NOT NULL,
            -- UTC copy of starts_at: RFC 3339 strings with offsets do not sort as instants.
            starts_utc TEXT NOT NULL,
            group_ids TEXT NOT NULL DEFAULT '[]',
            site_id TEXT,
            venue TEXT NOT NULL DEFAULT '',
            meeting_point TEXT NOT NULL DEFAULT '',
            transport TEXT NOT NULL DEFAULT 'none',
            notes TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'scheduled',
            feedback_closed INTEGER NOT NULL DEFAULT 0,
            conflicts TEXT NOT NULL DEFAULT '[]',
            version INTEGER NOT NULL DEFAULT 1,
            updated_at TEXT,
            PRIMARY KEY (event_id, id),
            UNIQUE (event_id, number),
            FOREIGN KEY (event_id, site_id) REFERENCES sites(event_id, id)
        );
        CREATE INDEX visits_by_start ON visits(event_id, starts_utc);
        CREATE TABLE questions (
            event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            id TEXT NOT NULL,
            kind TEXT NOT NULL,
            texts TEXT NOT NULL DEFAULT '{}',
            choices TEXT NOT NULL DEFAULT '[]',
            position INTEGER NOT NULL DEFAULT 0,
            version INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (event_id, id)
        );
        CREATE TABLE accounts (
            id TEXT PRIMARY KEY,
            event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('participant', 'host', 'organizer')),
            group_id TEXT,
            language TEXT NOT NULL DEFAULT 'en',
            country TEXT,
            organization TEXT NOT NULL DEFAULT '',
            -- SHA-256 of the bearer token; the token itself is never stored.
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            FOREIGN KEY (event_id, group_id) REFERENCES groups(event_id, id)
        );
        CREATE TABLE account_sites (
            account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            event_id TEXT NOT NULL,
            site_id TEXT NOT NULL,
            PRIMARY KEY (account_id, site_id),
            FOREIGN KEY (event_id, site_id) REFERENCES sites(event_id, id)
        );
        """,
    ),
    Migration(
        2,
        "sync: notes, feedback, clients, change feed, history",
        """
        CREATE TABLE notes (
            id TEXT PRIMARY KEY,
            event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            author_id TEXT NOT NULL REFERENCES accounts(id),
            visit_id TEXT,
            site_id TEXT,
            body TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',
            lat REAL,
            lon REAL,
            captured_at TEXT,
            share_with_organizers INTEGER NOT NULL DEFAULT 0,
            deleted INTEGER NOT NULL DEFAULT 0,
            -- The install that created the record: its own later edits never conflict with it.
            origin_client TEXT,
            version INTEGER NOT NULL DEFAULT 1,
            conflicts TEXT NOT NULL DEFAULT '[]',
            updated_at TEXT NOT NULL
        );
        CREATE INDEX notes_by_author ON notes(author_id);
        CREATE INDEX notes_shared ON notes(event_id, share_with_organizers);
        CREATE TABLE feedback (
            id TEXT PRIMARY KEY,
            event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
            author_id TEXT NOT NULL REFERENCES accounts(id),
            visit_id TEXT NOT NULL,
            site_id TEXT,
            rating INTEGER,
            answers TEXT NOT NULL DEFAULT '{}',
            comment TEXT NOT NULL DEFAULT '',
            origin_client TEXT,
            version INTEGER NOT NULL DEFAULT 1,
            conflicts TEXT NOT NULL DEFAULT '[]',
            updated_at TEXT NOT NULL,
            UNIQUE (author_id, visit_id)
        );
        CREATE INDEX feedback_by_visit ON feedback(event_id, visit_id);
        -- A second device's feedback for the same visit merges into the first; its id stays usable.
        CREATE TABLE feedback_aliases (
            alias_id TEXT PRIMARY KEY,
            feedback_id TEXT NOT NULL REFERENCES feedback(id)
        );
        CREATE TABLE sync_clients (
            account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            client_id TEXT NOT NULL,
            last_mutation_id INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (account_id, client_id)
        );
        -- The pull feed: one row per (record, audience), replaced on every change so that a pull
        -- sees only the latest state of each record. AUTOINCREMENT keeps seq strictly growing
        -- even after the newest row is replaced, and SQLite's single writer makes seq order
        -- commit order, so a cursor never skips a committed change.
        CREATE TABLE changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL,
            entity TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            audience TEXT NOT NULL
        );
        CREATE UNIQUE INDEX changes_key ON changes(event_id, entity, entity_id, audience);
        CREATE INDEX changes_feed ON changes(event_id, audience, seq);
        -- Who changed what, with old and new values: conflict detection and the audit trail.
        CREATE TABLE history (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            entity TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            account_id TEXT,
            client_id TEXT,
            at TEXT NOT NULL,
            changes TEXT NOT NULL,
            flagged TEXT,
            reverted_by INTEGER
        );
        CREATE INDEX history_by_record ON history(event_id, entity, entity_id, version);
        """,
    ),
    Migration(
        3,
        "photos: content-addressed blobs referenced by notes",
        """
        ALTER TABLE notes ADD COLUMN attachments TEXT NOT NULL DEFAULT '[]';
        -- Complete blobs only; their bytes live on disk under the data directory, named by hash.
        CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            media_type TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        -- Which notes reference which blob: who may fetch it, and whom to tell when it lands.
        CREATE TABLE note_blobs (
            sha256 TEXT NOT NULL,
            note_id TEXT NOT NULL REFERENCES notes(id) ON DELETE CASCADE,
            event_id TEXT NOT NULL,
            PRIMARY KEY (sha256, note_id)
        );
        CREATE INDEX note_blobs_by_note ON note_blobs(note_id);
        """,
    ),
    Migration(
        4,
        "pull feed index that covers its query",
        """
        -- Pulls read (seq, entity, entity_id) by event, audience and seq: an index holding all
        -- of them serves a page without touching the table or sorting the whole feed.
        DROP INDEX changes_feed;
        CREATE INDEX changes_feed ON changes(event_id, audience, seq, entity, entity_id);
        """,
    ),
    Migration(
        5,
        "results of processed mutations for retries; purge marks per audience",
        """
        -- Each processed mutation's result (msgspec JSON), so that a retry after a lost response
        -- is answered "duplicate" with the original result; pruned to a window per client.
        CREATE TABLE sync_results (
            account_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            mutation_id INTEGER NOT NULL,
            result BLOB NOT NULL,
            PRIMARY KEY (account_id, client_id, mutation_id)
        ) WITHOUT ROWID;
        -- How far purged tombstones reached, per feed audience: only a cursor of an audience that
        -- was told of a purged record, from below its mark, answers 410. Replaces the event-wide
        -- events.purged_seq (no longer written), carried over as the mark of everyone ("all").
        CREATE TABLE purge_marks (
            event_id TEXT NOT NULL,
            audience TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (event_id, audience)
        ) WITHOUT ROWID;
        INSERT INTO purge_marks (event_id, audience, seq) SELECT id, 'all', purged_seq FROM events WHERE purged_seq > 0;
        """,
    ),
    Migration(
        6,
        "photos: who proved to hold which blob, per event",
        """
        -- A blob's hash is no key to it: an account holds a blob in its event once it uploaded the
        -- bytes (size: what the copy counts against the quotas; created_at: since when, for purging).
        CREATE TABLE blob_owners (
            event_id TEXT NOT NULL,
            account_id TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (event_id, account_id, sha256)
        );
        CREATE INDEX blob_owners_by_blob ON blob_owners(event_id, sha256);
        -- Blobs uploaded before uploads were recorded: the author of the first note of the event that
        -- referenced one is taken as its uploader (who referenced it later may have only known its hash).
        INSERT OR IGNORE INTO blob_owners (event_id, account_id, sha256, size, created_at)
        SELECT b.event_id, n.author_id, b.sha256, blobs.size, blobs.created_at
        FROM note_blobs b JOIN notes n ON n.id = b.note_id JOIN blobs ON blobs.sha256 = b.sha256
        WHERE n.rowid = (
            SELECT MIN(n2.rowid) FROM note_blobs b2 JOIN notes n2 ON n2.id = b2.note_id
            WHERE b2.sha256 = b.sha256 AND b2.event_id = b.event_id
        );
        """,
    ),
    Migration(
        7,
        "account expiry, retirement and calendar feed tokens",
        """
        -- After this time (RFC 3339 UTC) the account's tokens stop working; NULL: never.
        ALTER TABLE accounts ADD COLUMN expires_at TEXT;
        -- Set when the account is retired: none of its tokens works any more, its records stay.
        ALTER TABLE accounts ADD COLUMN retired_at TEXT;
        -- A read-only token for the account's calendar feeds, put in a URL for apps that cannot send
        -- a header. Stored readable, because GET /api/v1/me shows the feed URL again; NULL: revoked.
        -- Its first 16 characters after 'svf_' select the row; the rest is compared in constant time.
        ALTER TABLE accounts ADD COLUMN feed_token TEXT;
        UPDATE accounts SET feed_token = 'svf_' || lower(hex(randomblob(32)));
        CREATE UNIQUE INDEX accounts_by_feed_selector ON accounts(substr(feed_token, 5, 16));
        """,
    ),
    Migration(
        8,
        "device clock kept beside the server's receive time; a row the health check writes",
        """
        -- client_time is the device's clock as sent (display only, never trusted); received_at is
        -- the server's clock when the mutation arrived; clock_skewed flags a device time more
        -- than a day off (or unreadable), so "last edited" displays can fall back to received_at.
        ALTER TABLE notes ADD COLUMN client_time TEXT;
        ALTER TABLE notes ADD COLUMN received_at TEXT;
        ALTER TABLE notes ADD COLUMN clock_skewed INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE feedback ADD COLUMN client_time TEXT;
        ALTER TABLE feedback ADD COLUMN received_at TEXT;
        ALTER TABLE feedback ADD COLUMN clock_skewed INTEGER NOT NULL DEFAULT 0;
        -- /health commits a write here: only a write finds a read-only file or a full disk.
        CREATE TABLE health_probe (id INTEGER PRIMARY KEY, at TEXT NOT NULL);
        """,
    ),
    Migration(
        9,
        "how far each device has pulled; the feed position of each visit change",
        """
        -- The feed position the server last served to a client in a pull that was caught up (its
        -- has_more false), and when: the device then holds every change up to it. Pages of a pull
        -- still paging on (a full pull is applied whole at its end) and 410 answers move neither.
        ALTER TABLE sync_clients ADD COLUMN pulled_seq INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE sync_clients ADD COLUMN pulled_at TEXT;
        -- The feed position at which a visit change reached the devices. The feed keeps one row per
        -- record, whose seq moves on with each later change; a device that pulled this change
        -- before the next one has it all the same, which only the position kept here can tell.
        ALTER TABLE history ADD COLUMN seq INTEGER;
        -- Every visit change adds its history entry, then its feed row ("all" is every visit's
        -- audience), in one transaction: the new row's seq belongs to the newest entry without one.
        CREATE TRIGGER history_feed_seq AFTER INSERT ON changes
        WHEN NEW.entity = 'visit' AND NEW.audience = 'all'
        BEGIN
            UPDATE history SET seq = NEW.seq
            WHERE id = (
                SELECT MAX(id) FROM history
                WHERE event_id = NEW.event_id AND entity = 'visit' AND entity_id = NEW.entity_id
            ) AND seq IS NULL;
        END;
        -- Entries from before: the newest of each visit is at its feed row; older ones stay unknown.
        UPDATE history SET seq = (
            SELECT c.seq FROM changes c
            WHERE c.event_id = history.event_id AND c.entity = 'visit' AND c.entity_id = history.entity_id
              AND c.audience = 'all'
        )
        WHERE entity = 'visit' AND id = (
            SELECT MAX(h.id) FROM history h
            WHERE h.event_id = history.event_id AND h.entity = 'visit' AND h.entity_id = history.entity_id
        );
        """,
    ),
    Migration(
        10,
        "the order notes reached the server, as a column",
        """
        -- Arrival order, which later edits (or a photo landing) do not change, unlike updated_at:
        -- the rowid until now, in a column of its own so that PostgreSQL, whose rows have no stable
        -- order, keeps it too (and `db copy` carries it over). New notes take their rowid.
        ALTER TABLE notes ADD COLUMN arrival INTEGER;
        UPDATE notes SET arrival = rowid;
        CREATE INDEX notes_by_arrival ON notes(event_id, arrival);
        CREATE TRIGGER notes_arrival AFTER INSERT ON notes WHEN NEW.arrival IS NULL
        BEGIN
            UPDATE notes SET arrival = NEW.rowid WHERE rowid = NEW.rowid;
        END;
        """,
    ),
    Migration(
        11,
        "each feed row's encoded change and summary share, written with the row",
        """
        -- The change a pull sends for this row, encoded as JSON when the row was written (at commit,
        -- from the record's final state in that transaction): pages are assembled from these bytes.
        -- NULL where the change depends on who asks beyond the audience (a delete, a note with
        -- attachments, conflicts that only some see) and for rows written before: those are shaped
        -- at pull time (server/storage/feed_payloads.py says which).
        ALTER TABLE changes ADD COLUMN payload BLOB;
        -- Whether the row's record counts in the summary of the row's audience (0: no; 1: yes; 2: yes,
        -- and it is a note shared with the organizers), and its share of the checksum, split in two
        -- 32-bit halves so that SUM never overflows. NULL counts: written before, not known.
        ALTER TABLE changes ADD COLUMN counts INTEGER;
        ALTER TABLE changes ADD COLUMN share_hi INTEGER;
        ALTER TABLE changes ADD COLUMN share_lo INTEGER;
        """,
    ),
]
