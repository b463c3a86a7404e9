-- One dispatcher replica at a time relays the outbox (an advisory lock). It hears of new rows at once, whichever
-- replica committed them: each statement adding rows notifies `kuaijing_outbox`, delivered on commit (one
-- notification per transaction however many statements).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kuaijing_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
