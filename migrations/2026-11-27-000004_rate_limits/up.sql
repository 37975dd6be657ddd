-- Rate limits shared by every instance (generic cell rate algorithm: one row per client and
-- bucket holding its theoretical arrival time). Unlogged: losing it in a crash only
-- forgets recent attempts, and updates need no WAL flush.
CREATE UNLOGGED TABLE rate_limits (
    bucket  text NOT NULL,
    client  text NOT NULL,
    tat     timestamptz NOT NULL,
    PRIMARY KEY (bucket, client)
);
