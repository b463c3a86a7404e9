-- JT/T 808 terminals: the auth code handed out in 0x8100, and the zone of each terminal's clock (the standard says
-- GMT+8; export-market devices may send UTC), as minutes east of UTC, set per unit in the registry.
ALTER TABLE units ADD COLUMN terminal_utc_offset_min integer NOT NULL DEFAULT 480
    CHECK (terminal_utc_offset_min BETWEEN -720 AND 840);

CREATE TABLE jt808_terminals (
    terminal_id    text PRIMARY KEY,
    auth_code      text NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now()
);
