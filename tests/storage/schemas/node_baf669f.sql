-- The node store's schema as created by offchain/node/store.py at commit baf669f (before numbered
-- migrations); the storage tests create a database from it and open it with the current code.
CREATE TABLE IF NOT EXISTS receipts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL UNIQUE,
    payer TEXT NOT NULL,
    amount TEXT NOT NULL,
    cumulative TEXT NOT NULL,
    voucher_cap TEXT NOT NULL,
    item BLOB NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    outbox TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    relayer_status TEXT,
    error TEXT,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS receipts_outbox ON receipts (outbox, seq);
CREATE INDEX IF NOT EXISTS receipts_payer ON receipts (payer, seq);
CREATE TABLE IF NOT EXISTS vouchers (
    payer TEXT PRIMARY KEY,
    max_cumulative TEXT NOT NULL,
    voucher TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS exact_payments (
    key TEXT PRIMARY KEY,
    payer TEXT NOT NULL,
    value TEXT NOT NULL,
    status TEXT NOT NULL,
    tx_hash TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
