-- creddy schema 9 (PostgreSQL): audit records by time, for pruning (audit.retention_days).
CREATE INDEX audit_events_time ON audit_events (time);
