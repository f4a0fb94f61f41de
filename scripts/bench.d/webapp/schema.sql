-- The baseline's tables: the same shape as the webapp's migration (users + outbox).
CREATE TABLE IF NOT EXISTS users (
    id uuid PRIMARY KEY, email text NOT NULL, password_hash text NOT NULL,
    first_name text NOT NULL, last_name text NOT NULL, verified boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_key ON users (lower(email));
CREATE TABLE IF NOT EXISTS outbox (
    id uuid PRIMARY KEY, event_type text NOT NULL, payload text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(), last_error text, sent_at timestamptz);
