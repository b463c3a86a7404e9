-- Analytics' own copy of the coverage samples on `kuaijing.coverage` (it never reads the dispatcher's tables):
-- one row per class and sampling instant, so a replay of the topic changes nothing.
CREATE TABLE analytics_coverage (
    ts          timestamptz NOT NULL,
    zone_class  text NOT NULL,
    target_s    integer NOT NULL,
    cells       integer NOT NULL,
    covered     integer NOT NULL,
    PRIMARY KEY (ts, zone_class)
);
