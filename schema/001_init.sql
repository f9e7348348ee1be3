-- Migration 1: models, their checkpoint versions and aliases, and training jobs.
-- Timestamps are ISO 8601 UTC with milliseconds ("2026-11-21T23:59:01.123Z"),
-- so they sort as text. JSON columns hold text that json_valid() accepts.

CREATE TABLE models (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL          -- when its newest version was put
);

-- Checkpoint bytes, content-addressed: the same bytes are stored once however
-- many versions (of however many models) name them.
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    size   INTEGER NOT NULL CHECK (size >= 0),
    data   BLOB NOT NULL
);

-- Versions of a model run 1, 2, 3 ... (the next is max + 1, taken inside a
-- write transaction).
CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY,
    model_id   INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    version    INTEGER NOT NULL CHECK (version >= 1),
    sha256     TEXT NOT NULL REFERENCES blobs(sha256),
    size       INTEGER NOT NULL,
    config     TEXT CHECK (config IS NULL OR json_valid(config)),
    metrics    TEXT CHECK (metrics IS NULL OR json_valid(metrics)),
    source     TEXT NOT NULL DEFAULT 'upload',
    created_at TEXT NOT NULL,
    UNIQUE (model_id, version)
);

-- Named pointers at a version. 'latest' follows every new version unless it
-- was set by hand (set_by_hand = 1).
CREATE TABLE aliases (
    model_id    INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    alias       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    set_by_hand INTEGER NOT NULL DEFAULT 0 CHECK (set_by_hand IN (0, 1)),
    PRIMARY KEY (model_id, alias),
    FOREIGN KEY (model_id, version) REFERENCES checkpoints(model_id, version)
);

-- Training jobs; the result names the checkpoint the job produced.
CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY,
    state          TEXT NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    config         TEXT NOT NULL CHECK (json_valid(config)),
    progress       TEXT CHECK (progress IS NULL OR json_valid(progress)),
    metrics        TEXT CHECK (metrics IS NULL OR json_valid(metrics)),
    result_model   TEXT,
    result_version INTEGER,
    error          TEXT,
    created_at     TEXT NOT NULL,
    started_at     TEXT,
    finished_at    TEXT
);

-- What a job reported, in order (seq runs 1, 2, 3 ... per job), so a client
-- that reconnects can ask for the events after the last one it saw.
CREATE TABLE job_events (
    job_id     INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    type       TEXT NOT NULL,
    data       TEXT CHECK (data IS NULL OR json_valid(data)),
    created_at TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
