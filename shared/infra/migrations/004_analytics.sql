-- Analytics' own copy of the call lifecycle, fed by `kuaijing.calls` (it never reads the dispatcher's tables), and
-- one derived row per call with the figures every report needs. Events are stored once per (call, event, unit, ts),
-- so replaying the topic from the start changes nothing; facts are recomputed from all of a call's events, so the
-- order events arrive in does not matter either.
CREATE TABLE analytics_calls (
    call_id     text PRIMARY KEY,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    zone_class  text NOT NULL,
    target_s    integer NOT NULL,
    category    text NOT NULL,
    priority    smallint NOT NULL
);

CREATE TABLE analytics_call_events (
    call_id      text NOT NULL,
    event        text NOT NULL,
    unit_id      text NOT NULL DEFAULT '',
    ts           timestamptz NOT NULL,
    source       text,
    platform_id  text,
    PRIMARY KEY (call_id, event, unit_id, ts)
);

CREATE TABLE call_facts (
    call_id            text PRIMARY KEY,
    received_at        timestamptz,
    dispatched_at      timestamptz,
    arrived_at         timestamptz,
    closed_at          timestamptz,
    zone_class         text NOT NULL,
    target_s           integer NOT NULL,
    first_unit_id      text,
    platform_id        text NOT NULL,
    dispatch_s         double precision,
    travel_s           double precision,
    response_s         double precision,
    handling_s         double precision
);
CREATE INDEX call_facts_received_idx ON call_facts (received_at);
