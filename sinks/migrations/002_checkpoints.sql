-- One row per Checkpoint, every field kept (hashes and signature as raw bytes).
CREATE TABLE IF NOT EXISTS {db}.checkpoints
(
    checkpoint_id     String                     CODEC(ZSTD(1)),
    ledger_partition  Int32,
    first_sequence    Int64,
    last_sequence     Int64,
    head_hash         String                     CODEC(ZSTD(1)),
    merkle_root       String                     CODEC(ZSTD(1)),
    created_at        DateTime64(6, 'UTC')       CODEC(Delta, ZSTD(1)),
    processor_id      LowCardinality(String),
    key_id            LowCardinality(String),
    signature         String                     CODEC(ZSTD(1)),
    src_topic         LowCardinality(String),
    src_partition     Int32,
    src_offset        Int64                      CODEC(Delta, ZSTD(1)),
    ingested_at       DateTime64(3, 'UTC') DEFAULT now64(3),
    PROJECTION p_source
    (
        SELECT src_topic, src_partition, src_offset
        ORDER BY src_topic, src_partition, src_offset
    )
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (ledger_partition, last_sequence, created_at)
SETTINGS non_replicated_deduplication_window = 10000,
         deduplicate_merge_projection_mode = 'rebuild'
;
