-- Migration 2: indexes for the lookups that are not by primary key.

-- Is a blob still referenced (on deleting a version)? Are these bytes already
-- a version of this model (on put)?
CREATE INDEX checkpoints_by_sha256 ON checkpoints(sha256, model_id);
-- Which aliases point at a version (on deleting it).
CREATE INDEX aliases_by_version ON aliases(model_id, version);
-- The default model: the most recently updated.
CREATE INDEX models_by_updated_at ON models(updated_at);
-- Queued and running jobs, on start-up and for the queue.
CREATE INDEX jobs_by_state ON jobs(state, id);
