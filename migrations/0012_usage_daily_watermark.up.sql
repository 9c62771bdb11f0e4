-- The daily rollups (0011) leave the ingest transaction (owner: accounting).
--
-- 0011 had every batch upsert its events into usage_rollups_daily_model and
-- usage_rollups_daily_user_key as well as the hourly rollups: 1.4x the
-- PostgreSQL instructions per batch (bench/README.md "Usage queries"), since a
-- batch of 1,000 events touches ~1,000 user/key rows and ~790 (org, model) rows
-- of the day and pre-aggregation folds almost nothing. Now the daily rows of a
-- UTC day are summed from usage_rollups_hourly once, by a maintenance job,
-- when the day is over; this table says how far that has gone.
--
-- day is the first UTC day NOT yet summarised. Days before it are complete in
-- the daily tables: the job wrote them, and the consumer adds to them only
-- events of such days that arrive late. Days from it on have no daily rows the
-- analytics read; their usage is read from the hourly rollups. The job
-- (services/accounting/daily.c) replaces the daily rows of the closed days
-- [day, today) from the hourly rollups and advances day, a day per
-- transaction, under an exclusive advisory lock that every batch transaction
-- takes shared before it reads day (services/accounting/consumer.c): no batch can add
-- hourly rows for a day while it is being summarised, and every batch after
-- the job sees the new day.
--
-- It starts at today (UTC): until now the consumer kept the daily rows of
-- every day itself, and today's will be replaced from the hourly rollups when
-- the day is summarised. Run it with the accounting consumers stopped, as 0010
-- and 0011, and start the new binary afterwards: an 0011 consumer does not
-- take the lock, so a day summarised while one still runs may miss its events.
CREATE TABLE usage_rollups_daily_watermark (
    singleton  boolean     PRIMARY KEY DEFAULT true CONSTRAINT usage_rollups_daily_watermark_one CHECK (singleton),
    day        date        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE usage_rollups_daily_watermark IS
    'One row: the first UTC day not yet summarised into the daily rollups. Daily rows of earlier days are complete; usage of this day and later is read from usage_rollups_hourly.';
COMMENT ON COLUMN usage_rollups_daily_watermark.singleton IS 'Always true: the table has one row.';
COMMENT ON COLUMN usage_rollups_daily_watermark.day IS
    'First UTC day whose usage is not yet in usage_rollups_daily_model and usage_rollups_daily_user_key (only late events are added there directly).';
COMMENT ON COLUMN usage_rollups_daily_watermark.updated_at IS 'When the watermark last moved.';
INSERT INTO usage_rollups_daily_watermark (day) VALUES ((now() AT TIME ZONE 'UTC')::date);
