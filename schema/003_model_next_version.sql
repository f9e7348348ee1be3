-- Migration 3: version numbers are never reused. A model remembers the next
-- number it will hand out, so deleting its highest version does not make
-- that number come back (as MLflow's registry: a number names one checkpoint
-- for ever, and a CI log that says "version 7" stays true).

ALTER TABLE models ADD COLUMN next_version INTEGER NOT NULL DEFAULT 1 CHECK (next_version >= 1);

-- Registries made before this migration: continue after the highest version.
UPDATE models SET next_version =
    COALESCE((SELECT MAX(c.version) FROM checkpoints c WHERE c.model_id = models.id), 0) + 1;
