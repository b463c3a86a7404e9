-- Move-up advice (issue 14), written with its outbox record to `kuaijing.advice` in one transaction. Advice only:
-- nothing reads it to move a unit; consoles read the newest per unit.
CREATE TABLE advice (
    advice_id    text PRIMARY KEY,
    ts           timestamptz NOT NULL,
    unit_id      text NOT NULL,
    message      jsonb NOT NULL
);
CREATE INDEX advice_ts_idx ON advice (ts);
