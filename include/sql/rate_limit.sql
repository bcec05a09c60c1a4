-- A token bucket per Harvest account, shared by every process that calls Harvest with it.
-- Each call reserves one request slot and says how long to wait for it (0: go now); a negative
-- balance is a queue of reservations, so waiting callers are served in order, none starves.
-- name: reserve
INSERT INTO harvest_sync.rate_limit AS r (account_id, tokens, refilled_at)
VALUES (%(account_id)s, %(burst)s - 1, clock_timestamp())
ON CONFLICT (account_id) DO UPDATE
SET tokens = LEAST(%(burst)s::float8,
                   r.tokens + extract(epoch FROM clock_timestamp() - r.refilled_at) * %(rate)s) - 1,
    refilled_at = clock_timestamp()
RETURNING GREATEST(0, -tokens / %(rate)s) AS wait_seconds;
