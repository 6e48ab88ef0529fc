-- A replay block (a verdict with basis `replay`: the action id was already decided, and a
-- repeated proposal was refused; processors/replay.py) is not the action's decision, so the
-- per-action summary leaves it out: folded in with `max`, its `block` would hide the allow
-- the action ran under. The refusal stays in audit_events (the verdict and its `security`
-- event). Recreating the view is enough: no replay verdict existed before this release.
DROP VIEW IF EXISTS {db}.action_summary_mv
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
    AND NOT (kind = 'verdict' AND basis = 'replay')
;
