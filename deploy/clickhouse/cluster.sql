-- Lockgate audit tables on a ClickHouse cluster. GENERATED from sinks/migrations/*.sql by
--   python -m sinks.cluster_ddl > deploy/clickhouse/cluster.sql
-- (do not edit by hand; tests/unit/sinks/test_cluster_ddl.py fails when this file drifts).
-- Storage is Replicated*MergeTree per shard; reads and writes go through Distributed tables
-- named like the embedded ones, so the query layer and the writer work unchanged.
--
-- Macros expected in each server's config: {cluster}, {shard}, {replica}.
-- Apply with: clickhouse-client --multiquery < deploy/clickhouse/cluster.sql

CREATE DATABASE IF NOT EXISTS lockgate ON CLUSTER '{cluster}';

CREATE TABLE IF NOT EXISTS lockgate.schema_migrations_local ON CLUSTER '{cluster}'
(
    version UInt32, name String, checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/lockgate/schema_migrations', '{replica}')
ORDER BY version;

CREATE TABLE IF NOT EXISTS lockgate.schema_migrations ON CLUSTER '{cluster}'
AS lockgate.schema_migrations_local
ENGINE = Distributed('{cluster}', lockgate, schema_migrations_local, version);

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

-- One row per Checkpoint, every field kept (hashes and signature as raw bytes).
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

-- ONE ROW PER ACTION, maintained incrementally: a materialized view turns every action,
-- verdict and outcome event into a partial row, an AggregatingMergeTree folds partial rows
-- of the same (tenant, day, action_id) together during merges, and readers finish the fold
-- with GROUP BY (see sinks/query.py). Each column is filled by exactly one event kind and
-- is empty/zero in the others, so `max` picks that kind's value (actor and service, which
-- outcomes and verdicts repeat, are taken from the proposal only). `max` is idempotent: a
-- duplicated event (should one ever slip past the writer's deduplication) changes nothing.
--
-- `day` is the day of each event, so an action whose outcome lands after midnight has two
-- partial rows; readers scan [day(from), day(to) + 1] and finish the fold per action_id.
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

-- Checkpoint.signature_format (schemas/Checkpoint.avsc): how `signature` signs the row —
-- 'interval/v1' (the default, every row written before the field existed) or
-- 'tlog-checkpoint/v1' (`signature` holds a whole-log C2SP signed note; trust/tlog.py).
ALTER TABLE lockgate.checkpoints_local ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS signature_format LowCardinality(String) DEFAULT 'interval/v1' AFTER signature;

ALTER TABLE lockgate.checkpoints ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS signature_format LowCardinality(String) DEFAULT 'interval/v1' AFTER signature;

DROP VIEW IF EXISTS lockgate.action_summary_mv ON CLUSTER '{cluster}';

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
WHERE kind IN ('action', 'verdict', 'outcome') AND action_id IS NOT NULL AND action_id != ''
    AND NOT (kind = 'verdict' AND basis = 'replay');
