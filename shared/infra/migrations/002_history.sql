-- Telemetry history, partitioned by day of event time. Partitions are created by the history writer before it
-- writes a day it has not seen (see services/ingest/adapters/history_store.py). The natural keys make every
-- write idempotent: (unit, ts) for positions, (unit, ts, channel) for video.
CREATE TABLE positions (
    unit_id      text NOT NULL,
    ts           timestamptz NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    speed_kmh    real,
    heading_deg  real,
    altitude_m   real,
    gnss         text,
    satellites   smallint,
    hdop         real,
    seq          bigint,
    fix          boolean NOT NULL,
    platform_id  text NOT NULL,
    h3           text NOT NULL,
    source       text NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (unit_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE video_pings (
    unit_id       text NOT NULL,
    ts            timestamptz NOT NULL,
    channel       smallint NOT NULL,
    state         text NOT NULL,
    bitrate_kbps  real,
    fps           real,
    resolution    text,
    codec         text,
    network       text,
    signal_dbm    real,
    platform_id   text NOT NULL,
    source        text NOT NULL,
    received_at   timestamptz NOT NULL,
    PRIMARY KEY (unit_id, ts, channel)
) PARTITION BY RANGE (ts);

-- Newest fixed position per unit by event time: what the dispatcher rebuilds its live map from.
-- A late ping lands in `positions` but never replaces a newer row here.
CREATE TABLE unit_latest_positions (
    unit_id      text PRIMARY KEY,
    ts           timestamptz NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    speed_kmh    real,
    heading_deg  real,
    platform_id  text NOT NULL,
    h3           text NOT NULL,
    received_at  timestamptz NOT NULL
);
