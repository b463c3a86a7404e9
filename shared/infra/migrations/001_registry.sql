-- Registry: platforms, units, zones. `registry_revision` moves on every change so that services can notice
-- a change with one cheap query instead of reloading everything on a timer.
CREATE TABLE platforms (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('fast_response', 'district_defense', 'patrol', 'group_defense',
                                              'rural_station')),
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE units (
    id           text PRIMARY KEY,
    platform_id  text NOT NULL REFERENCES platforms (id),
    kind         text NOT NULL CHECK (kind IN ('command_car', 'patrol_car', 'motorcycle')),
    callsign     text NOT NULL,
    -- JT/T 808 phone number without leading zeros: the 2013 and 2019 headers name the same terminal.
    terminal_id  text UNIQUE CHECK (terminal_id ~ '^[1-9][0-9]*$'),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX units_platform_idx ON units (platform_id);

CREATE TABLE zones (
    id          text PRIMARY KEY,
    class       text NOT NULL CHECK (class IN ('key_area', 'central_urban', 'other_urban', 'rural')),
    geometry    jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE registry_revision (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision   bigint NOT NULL
);
INSERT INTO registry_revision VALUES (true, 1);

CREATE FUNCTION bump_registry_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registry_revision SET revision = revision + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER platforms_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON platforms
    FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_revision();
CREATE TRIGGER units_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON units
    FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_revision();
CREATE TRIGGER zones_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON zones
    FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_revision();
