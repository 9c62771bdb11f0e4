-- Reverts 0005_audit_outbox.up.sql: drops exactly what it created.
DROP TABLE outbox;
DROP FUNCTION ias_outbox_notify();
DROP TABLE audit_checkpoints;
DROP TABLE audit_chain_head;
DROP TABLE audit_ledger;
DROP FUNCTION ias_audit_ledger_append_only();
