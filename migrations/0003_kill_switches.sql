-- Kill switches: a feature turned off for the whole fleet at once.
-- Locations name their feature (nexus_feature chat;); an enabled
-- kill.<feature> answers 503 KILL_SWITCH_ACTIVE on every node within a
-- second, through the same NOTIFY channel the key cache uses ('x:<name>').

CREATE TABLE kill_switches (
    name        text        PRIMARY KEY
                            CHECK (name ~ '^kill\.[a-z0-9_]{1,32}$'),
    enabled     boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text
);

CREATE FUNCTION nexus_notify_kill_switch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('nexus_keys', 'x:' || OLD.name);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('nexus_keys', 'x:' || NEW.name);
    RETURN NEW;
END;
$$;

CREATE TRIGGER kill_switches_notify
    AFTER INSERT OR UPDATE OR DELETE ON kill_switches
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_kill_switch();
