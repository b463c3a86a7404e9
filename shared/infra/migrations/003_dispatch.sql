-- Dispatch state: unit statuses, 110 calls and their events, and the outbox that carries every change to Kafka.
CREATE TABLE unit_status (
    unit_id  text PRIMARY KEY REFERENCES units (id) ON DELETE CASCADE,
    status   text NOT NULL CHECK (status IN ('available', 'dispatched', 'en_route', 'on_scene', 'off_duty')),
    call_id  text,
    since    timestamptz NOT NULL
);

CREATE TABLE calls (
    call_id      text PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    category     text NOT NULL,
    priority     smallint NOT NULL CHECK (priority BETWEEN 1 AND 3),
    address      text,
    note         text,
    zone_class   text NOT NULL,
    target_s     integer NOT NULL,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_received_idx ON calls (received_at);
CREATE INDEX calls_open_idx ON calls (status) WHERE status = 'open';

-- A repeated event (same call, event, unit and ts) is stored once; '' stands for "no unit".
CREATE TABLE call_events (
    call_id      text NOT NULL REFERENCES calls (call_id),
    event        text NOT NULL CHECK (event IN ('created', 'assigned', 'en_route', 'on_scene', 'closed')),
    unit_id      text NOT NULL DEFAULT '',
    ts           timestamptz NOT NULL,
    source       text,
    platform_id  text,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, event, unit_id, ts)
);

-- Transactional outbox: a change and the records announcing it commit together; a relay publishes in id order
-- and deletes what Kafka acknowledged, so nothing committed is ever lost on the way to Kafka.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    key         bytea NOT NULL,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
