-- One row per AuditEvent. The ledger columns (event_id .. canonical_version) are stored
-- losslessly so `verify` can recompute every hash from ClickHouse alone; the remaining
-- columns are decoded from the payload for querying and may be empty when the payload
-- could not be decoded (decode_error says why).
--
-- ORDER BY (tenant, actor_id, recorded_at): the top audit questions are "what did this
-- tenant/actor do, when". Two projections serve the other access paths:
--   p_chain    the ledger in chain order (ledger_partition, sequence) for verify paging;
--   p_resource (tenant, resource, recorded_at) for resource-prefix + time questions.
-- src_topic/src_partition/src_offset identify the Kafka record a row came from; the writer
-- uses them (through p_source) to drop redelivered records after a restart.
CREATE TABLE IF NOT EXISTS {db}.audit_events
(
    event_id          String                     CODEC(ZSTD(1)),
    kind              LowCardinality(String),
    recorded_at       DateTime64(6, 'UTC')       CODEC(Delta, ZSTD(1)),
    tenant            LowCardinality(String),
    action_id         Nullable(String)           CODEC(ZSTD(1)),
    payload           String                     CODEC(ZSTD(3)),
    detail            Nullable(String)           CODEC(ZSTD(3)),
    ledger_partition  Int32,
    sequence          Int64                      CODEC(Delta, ZSTD(1)),
    prev_hash         String                     CODEC(ZSTD(1)),
    hash              String                     CODEC(ZSTD(1)),
    canonical_version Int32 DEFAULT 1,

    src_topic         LowCardinality(String),
    src_partition     Int32,
    src_offset        Int64                      CODEC(Delta, ZSTD(1)),
    ingested_at       DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),

    payload_schema    LowCardinality(String),
    decode_error      String                     CODEC(ZSTD(1)),
    correlation_id    String                     CODEC(ZSTD(1)),
    actor_id          String                     CODEC(ZSTD(1)),
    actor_roles       Array(LowCardinality(String)),
    service           LowCardinality(String),
    type              LowCardinality(String),
    resource          String                     CODEC(ZSTD(1)),
    attributes        Map(String, String)        CODEC(ZSTD(3)),
    sql               String                     CODEC(ZSTD(3)),
    change_json       String                     CODEC(ZSTD(3)),
    before_json       String                     CODEC(ZSTD(3)),
    after_json        String                     CODEC(ZSTD(3)),
    decision          LowCardinality(String),
    basis             LowCardinality(String),
    rule_ids          Array(String)              CODEC(ZSTD(1)),
    rule_effects      Array(LowCardinality(String)),
    rule_modes        Array(LowCardinality(String)),
    rule_errors       Array(String)              CODEC(ZSTD(1)),
    policy_name       LowCardinality(String),
    policy_version    Int64,
    reason            String                     CODEC(ZSTD(3)),
    outcome_status    LowCardinality(String),
    error_type        LowCardinality(String),
    error_message     String                     CODEC(ZSTD(3)),
    proposed_at       DateTime64(6, 'UTC')       CODEC(Delta, ZSTD(1)),
    decided_at        DateTime64(6, 'UTC')       CODEC(Delta, ZSTD(1)),
    outcome_at        DateTime64(6, 'UTC')       CODEC(Delta, ZSTD(1)),
    eval_latency_us   Int64                      CODEC(T64, ZSTD(1)),
    processor_id      LowCardinality(String),
    key_id            LowCardinality(String),

    INDEX idx_action_id action_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_event_id event_id TYPE bloom_filter(0.01) GRANULARITY 1,
    PROJECTION p_chain
    (
        SELECT event_id, kind, recorded_at, tenant, action_id, payload, detail,
               ledger_partition, sequence, prev_hash, hash, canonical_version
        ORDER BY ledger_partition, sequence
    ),
    PROJECTION p_resource
    (
        SELECT tenant, resource, recorded_at, kind, action_id, actor_id, service, type, decision
        ORDER BY tenant, resource, recorded_at
    ),
    PROJECTION p_source
    (
        SELECT src_topic, src_partition, src_offset
        ORDER BY src_topic, src_partition, src_offset
    )
)
ENGINE = MergeTree
PARTITION BY toDate(recorded_at)
ORDER BY (tenant, actor_id, recorded_at)
SETTINGS non_replicated_deduplication_window = 10000,
         deduplicate_merge_projection_mode = 'rebuild'
;
