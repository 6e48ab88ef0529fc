-- Checkpoint.signature_format (schemas/Checkpoint.avsc): how `signature` signs the row —
-- 'interval/v1' (the default, every row written before the field existed) or
-- 'tlog-checkpoint/v1' (`signature` holds a whole-log C2SP signed note; trust/tlog.py).
ALTER TABLE {db}.checkpoints
    ADD COLUMN IF NOT EXISTS signature_format LowCardinality(String) DEFAULT 'interval/v1' AFTER signature
;
