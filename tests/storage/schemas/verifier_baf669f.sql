-- The verifier store's schema as created by offchain/verifier/store.py at commit baf669f (before numbered
-- migrations); the storage tests create a database from it and open it with the current code.
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    id TEXT PRIMARY KEY,
    receipt_hash TEXT NOT NULL,
    node TEXT NOT NULL,
    model_id TEXT NOT NULL,
    receipt TEXT NOT NULL,           -- signed receipt JSON (camelCase)
    seq INTEGER,                     -- the relayer feed's seq, if from the feed
    seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_hash ON receipts(receipt_hash);
CREATE TABLE IF NOT EXISTS flags (
    receipt_hash TEXT NOT NULL,
    flagger TEXT NOT NULL,
    block INTEGER NOT NULL,
    bond TEXT NOT NULL,
    PRIMARY KEY (receipt_hash, flagger)
);
CREATE TABLE IF NOT EXISTS checks (
    id TEXT PRIMARY KEY,             -- receipt id (EIP-712 digest)
    receipt_hash TEXT NOT NULL,
    node TEXT NOT NULL,
    source TEXT NOT NULL,            -- sample | flag | dispute
    status TEXT NOT NULL,            -- queued | done | skipped
    payload TEXT,                    -- a payer's payload (dispute), JSON
    attempts INTEGER NOT NULL DEFAULT 0,
    first_attempt_at REAL,
    next_at REAL NOT NULL,
    last_error TEXT,
    valid INTEGER,                   -- the verdict, once decided (never changes)
    reason TEXT,
    withheld INTEGER NOT NULL DEFAULT 0,
    signature TEXT,                  -- Verdict(receipt_hash, valid) signature
    seconds REAL,                    -- re-execution time
    posted INTEGER NOT NULL DEFAULT 0,   -- 0 to send | 1 stored by the relayer | -1 refused
    post_error TEXT,
    reported INTEGER NOT NULL DEFAULT 0, -- withholding report: 0 to send (if withheld) | 1 sent | -1 refused
    report_signature TEXT,           -- PayloadWithheld(receipt_hash, node) signature (never a Verdict)
    flag_state TEXT,                 -- NULL | pending | sent | skipped | failed
    flag_tx TEXT,
    created_at REAL NOT NULL,
    decided_at REAL
);
CREATE INDEX IF NOT EXISTS checks_due ON checks(next_at) WHERE status = 'queued';
CREATE TABLE IF NOT EXISTS drift (   -- teacher-forced tokens per node (the statistical test, never a slash)
    node TEXT PRIMARY KEY,
    receipts INTEGER NOT NULL DEFAULT 0,
    scored INTEGER NOT NULL DEFAULT 0,   -- tokens scored
    drifted INTEGER NOT NULL DEFAULT 0,  -- tokens beyond the drift margin
    max_margin REAL NOT NULL DEFAULT 0,
    flagged_at REAL                      -- when the binomial test flagged the node (then sampled at rate 1)
);
CREATE INDEX IF NOT EXISTS checks_hash ON checks(receipt_hash);
