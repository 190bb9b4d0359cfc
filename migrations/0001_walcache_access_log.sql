-- walcache migration 0001: the access log.
--
-- The repository samples its reads into this table (one row per key and time bucket);
-- the default warmer reads the hottest keys of recent buckets from it.
--
-- Migrations run inside one transaction with `search_path` set to walcache's own schema
-- (`walcache` unless `walcache setup` is told otherwise), so names are left unqualified
-- here. To run this file by hand: SET search_path TO walcache; then the `up` section.

-- up
CREATE TABLE access_log (
  key    text        NOT NULL,
  entity text,
  hits   bigint      NOT NULL DEFAULT 0,
  bucket timestamptz NOT NULL,
  PRIMARY KEY (key, bucket)
);

CREATE INDEX access_log_bucket_hits_idx ON access_log (bucket, hits DESC);

-- down
DROP TABLE access_log;
