-- Lockgate audit tables on a ClickHouse cluster (production variant of
-- sinks/migrations/*.sql). Same columns, codecs, projections and the same
-- one-row-per-action design; storage is ReplicatedMergeTree per shard, reads and writes go
-- through Distributed tables named like the embedded ones, so sinks/query.py and the
-- writer work unchanged with LOCKGATE_CLICKHOUSE_DATABASE=lockgate.
--
-- Macros expected in each server's config: {cluster}, {shard}, {replica}.
-- Sharding: by ledger_partition for events (a chain stays on one shard, so verify reads
-- one shard per partition and insert dedup windows are per chain), by cityHash64(action_id)
-- for the action summary (all partial rows of an action fold on one shard).
-- Replicated tables deduplicate inserts by block hash/token without extra settings
-- (replicated_deduplication_window); the writer's token + source-offset check still apply.
-- Apply with: clickhouse-client --multiquery < deploy/clickhouse/cluster.sql

CREATE DATABASE IF NOT EXISTS lockgate ON CLUSTER '{cluster}';

CREATE TABLE IF NOT EXISTS lockgate.schema_migrations_local ON CLUSTER '{cluster}'
(
    version UInt32, name String, checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/lockgate/schema_migrations', '{replica}')
ORDER BY version;

CREATE TABLE IF NOT EXISTS lockgate.audit_events_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/lockgate/audit_events', '{replica}')
PARTITION BY toDate(recorded_at)
ORDER BY (tenant, actor_id, recorded_at)
SETTINGS deduplicate_merge_projection_mode = 'rebuild';

CREATE TABLE IF NOT EXISTS lockgate.audit_events ON CLUSTER '{cluster}'
AS lockgate.audit_events_local
ENGINE = Distributed('{cluster}', lockgate, audit_events_local, ledger_partition);

CREATE TABLE IF NOT EXISTS lockgate.checkpoints_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/lockgate/checkpoints', '{replica}')
PARTITION BY toYYYYMM(created_at)
ORDER BY (ledger_partition, last_sequence, created_at)
SETTINGS deduplicate_merge_projection_mode = 'rebuild';

CREATE TABLE IF NOT EXISTS lockgate.checkpoints ON CLUSTER '{cluster}'
AS lockgate.checkpoints_local
ENGINE = Distributed('{cluster}', lockgate, checkpoints_local, ledger_partition);

CREATE TABLE IF NOT EXISTS lockgate.action_summary_local ON CLUSTER '{cluster}'
(
    tenant          LowCardinality(String),
    day             Date,
    action_id       String,
    proposed_at     SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    decided_at      SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    outcome_at      SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    has_action      SimpleAggregateFunction(max, UInt8),
    has_verdict     SimpleAggregateFunction(max, UInt8),
    has_outcome     SimpleAggregateFunction(max, UInt8),
    actor_id        SimpleAggregateFunction(max, String),
    actor_roles     SimpleAggregateFunction(max, Array(String)),
    service         SimpleAggregateFunction(max, String),
    type            SimpleAggregateFunction(max, String),
    resource        SimpleAggregateFunction(max, String),
    attributes      SimpleAggregateFunction(max, Map(String, String)),
    sql             SimpleAggregateFunction(max, String),
    change_json     SimpleAggregateFunction(max, String),
    before_json     SimpleAggregateFunction(max, String),
    after_json      SimpleAggregateFunction(max, String),
    decision        SimpleAggregateFunction(max, String),
    basis           SimpleAggregateFunction(max, String),
    rule_ids        SimpleAggregateFunction(max, Array(String)),
    rule_effects    SimpleAggregateFunction(max, Array(String)),
    rule_modes      SimpleAggregateFunction(max, Array(String)),
    policy_name     SimpleAggregateFunction(max, String),
    policy_version  SimpleAggregateFunction(max, Int64),
    reason          SimpleAggregateFunction(max, String),
    eval_latency_us SimpleAggregateFunction(max, Int64),
    outcome_status  SimpleAggregateFunction(max, String),
    error_type      SimpleAggregateFunction(max, String),
    error_message   SimpleAggregateFunction(max, String)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/lockgate/action_summary', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, day, action_id);

CREATE TABLE IF NOT EXISTS lockgate.action_summary ON CLUSTER '{cluster}'
AS lockgate.action_summary_local
ENGINE = Distributed('{cluster}', lockgate, action_summary_local, cityHash64(action_id));

-- The MV runs on each shard over the rows that shard receives and writes through the
-- Distributed summary table, so an action's partial rows meet on one shard.
CREATE MATERIALIZED VIEW IF NOT EXISTS lockgate.action_summary_mv ON CLUSTER '{cluster}'
TO lockgate.action_summary AS
SELECT
    tenant,
    toDate(recorded_at) AS day,
    assumeNotNull(action_id) AS action_id,
    proposed_at, decided_at, outcome_at,
    toUInt8(kind = 'action') AS has_action,
    toUInt8(kind = 'verdict') AS has_verdict,
    toUInt8(kind = 'outcome') AS has_outcome,
    if(kind = 'action', actor_id, '') AS actor_id,
    CAST(actor_roles, 'Array(String)') AS actor_roles,
    if(kind = 'action', CAST(service, 'String'), '') AS service,
    CAST(type, 'String') AS type,
    resource, attributes, sql, change_json, before_json, after_json,
    CAST(decision, 'String') AS decision,
    CAST(basis, 'String') AS basis,
    rule_ids,
    CAST(rule_effects, 'Array(String)') AS rule_effects,
    CAST(rule_modes, 'Array(String)') AS rule_modes,
    CAST(policy_name, 'String') AS policy_name,
    policy_version, reason, eval_latency_us,
    CAST(outcome_status, 'String') AS outcome_status,
    CAST(error_type, 'String') AS error_type,
    error_message
FROM lockgate.audit_events_local
WHERE kind IN ('action', 'verdict', 'outcome') AND action_id IS NOT NULL AND action_id != '';
