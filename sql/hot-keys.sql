-- walcache warmer: the hottest keys of the last 24 hours, from the access log.
--
-- The default `sql` of a warmer (`warmers.<name>.sql: 'hot-keys.sql'`).
-- Parameters: $1 the warmer's entity, $2 the most keys to return (the warmer's `limit`).
-- Returns a `key` column of cache keys (`users:42`); the warmer loads them in batches.
--
-- The access log lives in walcache's own schema, `walcache` unless `walcache setup` was
-- told another: this file names it. With another schema, copy this file, change the
-- schema below, and point the warmer's `sql` option at the copy (a path, absolute or
-- relative to the working directory).
SELECT key
FROM walcache.access_log
WHERE entity = $1
  AND bucket >= now() - interval '24 hours'
GROUP BY key
ORDER BY sum(hits) DESC, key
LIMIT $2
