-- Coverage of the 1-3-5 promise, sampled by the dispatcher for reports: per zone, and per class (zone_id '').
-- Samples sit on a fixed grid of instants, so replicas measuring the same instant keep one row.
CREATE TABLE coverage_samples (
    ts          timestamptz NOT NULL,
    zone_class  text NOT NULL,
    zone_id     text NOT NULL DEFAULT '',
    target_s    integer NOT NULL,
    cells       integer NOT NULL,
    covered     integer NOT NULL,
    PRIMARY KEY (ts, zone_class, zone_id)
);
