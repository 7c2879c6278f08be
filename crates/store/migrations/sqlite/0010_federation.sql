-- creddy schema 10 (SQLite): federated agents (§18) carry the name of the [[trust]] that admitted
-- them; NULL for every other agent.
ALTER TABLE agents ADD COLUMN trust TEXT;
