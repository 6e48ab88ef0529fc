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
CREATE TABLE IF NOT EXISTS {db}.action_summary
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
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, day, action_id)
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.action_summary_mv TO {db}.action_summary AS
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
FROM {db}.audit_events
WHERE kind IN ('action', 'verdict', 'outcome') AND action_id IS NOT NULL AND action_id != ''
;
