-- The relayer store's schema as created by offchain/relayer/store.py at commit baf669f (before numbered
-- migrations); the storage tests create a database from it and open it with the current code.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    id TEXT PRIMARY KEY,                 -- EIP-712 digest of the Receipt (NodeStaking domain)
    struct_hash TEXT NOT NULL,           -- what Verdicts sign
    request_id TEXT NOT NULL,
    payer TEXT NOT NULL,
    node TEXT NOT NULL,
    model_id TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    output_hash TEXT NOT NULL,
    amount TEXT NOT NULL,
    cumulative TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    signature TEXT NOT NULL,
    voucher_cap TEXT NOT NULL,
    voucher_signature TEXT NOT NULL,
    status TEXT NOT NULL,                -- pending | settled | rejected
    reason TEXT,
    batch_id INTEGER,
    accepted_at REAL NOT NULL,
    settled_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS receipts_request ON receipts(node, request_id);
CREATE INDEX IF NOT EXISTS receipts_struct ON receipts(struct_hash);
CREATE INDEX IF NOT EXISTS receipts_unbatched ON receipts(accepted_at) WHERE status = 'pending' AND batch_id IS NULL;
CREATE INDEX IF NOT EXISTS receipts_batch ON receipts(batch_id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS receipts_channel ON receipts(payer, node) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS conflicting_receipts (  -- a second receipt of a node for a requestId: evidence
    id TEXT PRIMARY KEY,
    conflicts_with TEXT NOT NULL,
    struct_hash TEXT NOT NULL,
    request_id TEXT NOT NULL,
    payer TEXT NOT NULL,
    node TEXT NOT NULL,
    model_id TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    output_hash TEXT NOT NULL,
    amount TEXT NOT NULL,
    cumulative TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    signature TEXT NOT NULL,
    voucher_cap TEXT NOT NULL,
    voucher_signature TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    batch_id INTEGER,
    accepted_at REAL NOT NULL,
    settled_at REAL
);
CREATE TABLE IF NOT EXISTS channels (
    payer TEXT NOT NULL,
    node TEXT NOT NULL,
    charged TEXT NOT NULL,
    cap TEXT NOT NULL,
    voucher_signature TEXT NOT NULL,
    settled TEXT NOT NULL,
    signer TEXT NOT NULL DEFAULT '',          -- the best voucher's signer ('' = the payer)
    payer_cap TEXT NOT NULL DEFAULT '0',      -- the best voucher signed by the payer itself
    payer_signature TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (payer, node)
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,                -- built | sent | confirmed | failed | skipped
    receipts_root TEXT NOT NULL,
    claims TEXT NOT NULL,                -- JSON list of claims (and their outcomes once confirmed)
    receipt_count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    confirmed_at REAL,
    tx_hash TEXT,
    nonce INTEGER,
    block_number INTEGER,
    gas_used INTEGER,
    gas_price TEXT,
    settled_amount TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE IF NOT EXISTS transactions (
    tx_hash TEXT PRIMARY KEY,            -- recorded before broadcast (write-ahead)
    kind TEXT NOT NULL,                  -- batch | slash | exact
    ref TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    raw TEXT NOT NULL,
    sent_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_ref ON transactions(kind, ref);
CREATE TABLE IF NOT EXISTS verdicts (
    receipt_hash TEXT NOT NULL,
    verifier TEXT NOT NULL,
    valid INTEGER NOT NULL,
    signature TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (receipt_hash, verifier, valid)
);
CREATE TABLE IF NOT EXISTS slashes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                  -- equivocation | fraud | lazy_verifier
    evidence TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,               -- the node or verifier slashed
    args TEXT NOT NULL,                  -- JSON: what the transaction needs
    status TEXT NOT NULL,                -- queued | sent | confirmed | skipped | failed
    tx_hash TEXT,
    amount TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS withholding_reports (  -- verifiers' signed reports of payloads a node did not release
    receipt_hash TEXT NOT NULL,
    node TEXT NOT NULL,
    verifier TEXT NOT NULL,
    signature TEXT NOT NULL,             -- the verifier's Verdict(receiptHash, valid=false) signature
    reason TEXT,
    reported_at REAL NOT NULL,
    PRIMARY KEY (receipt_hash, verifier)
);
CREATE INDEX IF NOT EXISTS withholding_node ON withholding_reports(node);
CREATE TABLE IF NOT EXISTS exact_payments (
    id TEXT PRIMARY KEY,                 -- payer:nonce of the EIP-3009 authorisation
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    value TEXT NOT NULL,
    authorization TEXT NOT NULL,         -- JSON payload (authorization + signature)
    status TEXT NOT NULL,                -- sent | confirmed | failed
    tx_hash TEXT,
    block_number INTEGER,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
